package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/smppd/smppd/smpp"
	"github.com/smppd/smppd/smpp/smpptest"
)

const waitTimeout = 5 * time.Second

// receiver binds a receiver to sim and returns the deliver_sm PDUs it gets (answered ESME_ROK).
func receiver(t *testing.T, sim *smpptest.SMSC) <-chan smpp.Submit {
	t.Helper()
	got := make(chan smpp.Submit, 10)
	cfg := smpp.DefaultClientConfig()
	cfg.Addr, cfg.SystemID, cfg.Password, cfg.BindType, cfg.Window = sim.Addr(), "smppd", "smppd", smpp.Receiver, 10
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.OnDeliver = func(c *smpp.Client, ref smpp.DeliverRef, p []byte) {
		var m smpp.Submit
		if err := smpp.ParseSubmit(append([]byte(nil), p[smpp.HeaderLen:]...), &m); err != nil {
			t.Errorf("deliver_sm: %v", err)
		}
		got <- m
		_ = c.RespondDeliver(ref, smpp.StatusOK)
	}
	c := smpp.NewClient(cfg)
	c.Start()
	t.Cleanup(func() { c.Close(context.Background()) })
	return got
}

func post(t *testing.T, srv *httptest.Server, contentType, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(srv.URL+"/mo", contentType, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("response %q is not JSON: %v", b, err)
	}
	return resp.StatusCode, out
}

func TestHTTPMO(t *testing.T) {
	sim, err := smpptest.Start(smpptest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	srv := httptest.NewServer(newHTTPHandler(sim))
	t.Cleanup(srv.Close)

	// Queued before anyone binds.
	form := url.Values{"system_id": {"smppd"}, "from": {"+447700900001"}, "to": {"12345"}, "text": {"STOP"}}.Encode()
	if code, out := post(t, srv, "application/x-www-form-urlencoded", form); code != http.StatusAccepted || out["parts"] != 1.0 {
		t.Fatalf("form POST: %d %v", code, out)
	}
	long := strings.Repeat("Привет ", 12) // UCS2, 84 characters: two parts
	js, _ := json.Marshal(moRequest{SystemID: "smppd", From: "Brand", To: "447700900001", Text: long})
	if code, out := post(t, srv, "application/json", string(js)); code != http.StatusAccepted || out["parts"] != 2.0 {
		t.Fatalf("JSON POST: %d %v", code, out)
	}
	got := receiver(t, sim)
	next := func() smpp.Submit {
		select {
		case m := <-got:
			return m
		case <-time.After(waitTimeout):
			t.Fatal("no MO delivered")
			return smpp.Submit{}
		}
	}
	if m := next(); string(m.ShortMessage) != "STOP" || string(m.SrcAddr) != "447700900001" || m.SrcTON != 1 || string(m.DstAddr) != "12345" {
		t.Fatalf("form MO: %+v", m)
	}
	for i := 1; i <= 2; i++ {
		m := next()
		if m.DataCoding != 0x08 || m.ESMClass != 0x40 || m.ShortMessage[4] != 2 || m.ShortMessage[5] != byte(i) || m.SrcTON != 5 {
			t.Fatalf("part %d: dc %#x esm %#x UDH % x src ton %d", i, m.DataCoding, m.ESMClass, m.ShortMessage[:6], m.SrcTON)
		}
	}

	var st smpptest.Stats
	smpptest.WaitFor(t, "3 MO acknowledged in GET /stats", waitTimeout, func() bool {
		resp, err := http.Get(srv.URL + "/stats")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /stats: %d %v", resp.StatusCode, err)
		}
		return st.MOAcked == 3
	})
	if st.MOPending != 0 || st.MOSent != 3 || st.Submits != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestHTTPMOBadRequest(t *testing.T) {
	sim, err := smpptest.Start(smpptest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	srv := httptest.NewServer(newHTTPHandler(sim))
	t.Cleanup(srv.Close)
	for _, tt := range []struct {
		ct, body, field string
	}{
		{"application/x-www-form-urlencoded", "from=1&to=2&text=x", "system_id"},
		{"application/x-www-form-urlencoded", "system_id=nobody&from=1&to=2&text=x", "system_id"},
		{"application/x-www-form-urlencoded", "system_id=smppd&to=2&text=x", "from"},
		{"application/x-www-form-urlencoded", "system_id=smppd&from=1&text=x", "to"},
		{"application/x-www-form-urlencoded", "system_id=smppd&from=1&to=2", "text"},
		{"application/json", `{"system_id":"smppd","from":"1","to":"123456789012345678901","text":"x"}`, "to"},
		{"application/json", `{"system_id":"smppd",`, "body"},
		{"application/json", `{"sender":"1"}`, "body"},
	} {
		code, out := post(t, srv, tt.ct, tt.body)
		msg, _ := out["error"].(string)
		if code != http.StatusBadRequest || !strings.HasPrefix(msg, tt.field+":") {
			t.Errorf("POST %s: %d %q, want 400 naming %s", tt.body, code, msg, tt.field)
		}
	}
	if resp, err := http.Get(srv.URL + "/mo"); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET /mo: %v %v, want 405", resp.StatusCode, err)
	}
	if st := sim.Stats(); st.MOPending != 0 {
		t.Fatalf("bad requests queued %d MO", st.MOPending)
	}
}
