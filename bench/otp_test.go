package bench

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/smppd/smppd/config"
	"github.com/smppd/smppd/smpp"
	"github.com/smppd/smppd/smpp/smpptest"
)

// BenchmarkOTPUnderFlood: 8 bulk connections keep 100 submits each outstanding against an
// upstream of 2 binds x window 100 whose SMSC answers after 20 ms, so bulk alone saturates every
// window; meanwhile one client sends verification codes one at a time. Reported: the codes'
// submit-to-response p50/p99 with lanes (10 % of each window reserved for OTP) and without
// (reserve 0), in the same run, and the bulk rate. The SMSC's 20 ms is in every figure.
func BenchmarkOTPUnderFlood(b *testing.B) {
	for _, tc := range []struct {
		name    string
		reserve int
	}{{"lanes", 10}, {"no_lanes", 0}} {
		b.Run(tc.name, func(b *testing.B) {
			e := newEnv(b, func(c *config.Config) {
				c.Lanes.Enabled, c.Router.OTPReservePercent = true, tc.reserve
				c.Upstreams[0].Binds, c.Upstreams[0].Window = 2, 100
				c.Router.MaxWait = config.Duration(10 * time.Second)
			})
			e.sim.SetFaults(smpptest.Faults{Delay: 20 * time.Millisecond})
			bulk, err := Dial(e.node.SMPPAddr(), "demo", "demo", 8, 100, bindTimeout)
			if err != nil {
				b.Fatal(err)
			}
			defer bulk.Close()
			otp, err := Dial(e.node.SMPPAddr(), "demo", "demo", 1, 1, bindTimeout)
			if err != nil {
				b.Fatal(err)
			}
			defer otp.Close()
			bulkPDU := submitPDU()
			s := smpp.Submit{DstTON: 1, DstNPI: 1, DstAddr: []byte("4915112345678"), ShortMessage: []byte("Your verification code is 00000000")}
			otpPDU := smpp.AppendSubmitPDU(nil, smpp.SubmitSM, 1, &s)
			otp.Vary = len(otpPDU) - 8
			bulk.Vary = len(bulkPDU) - 8

			stop := make(chan struct{})
			var wg sync.WaitGroup
			var bulkMsgs, bulkNs int64
			wg.Add(1)
			go func() { // the flood, in rounds until the codes are through
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					r := bulk.Run(bulkPDU, 1600, runTimeout)
					bulkMsgs += int64(r.Msgs)
					bulkNs += r.Elapsed.Nanoseconds()
				}
			}()
			time.Sleep(200 * time.Millisecond) // let the flood fill the windows: load shaping, not synchronisation
			n := max(b.N, 50)
			var lat []time.Duration
			b.ResetTimer()
			for i := 0; i < n; i++ {
				r := otp.Run(otpPDU, 1, runTimeout)
				if r.Err != nil {
					b.Fatal(r.Err)
				}
				lat = append(lat, r.Elapsed)
			}
			b.StopTimer()
			close(stop)
			wg.Wait()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1e3, "otp_p50_ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1e3, "otp_p99_ms")
			if bulkNs > 0 {
				b.ReportMetric(float64(bulkMsgs)/(float64(bulkNs)/1e9), "bulk_msgs/s")
			}
		})
	}
}
