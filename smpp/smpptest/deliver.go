package smpptest

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/smppd/smppd/smpp"
)

// DeliveryKind says what a deliver_sm of the simulator carries.
type DeliveryKind uint8

// Delivery kinds.
const (
	KindReceipt DeliveryKind = iota + 1 // a delivery receipt (esm_class 0x04)
	KindMO                              // a mobile-originated message (SendMO, SendMOText)
)

func (k DeliveryKind) String() string {
	switch k {
	case KindReceipt:
		return "receipt"
	case KindMO:
		return "mo"
	}
	return fmt.Sprintf("DeliveryKind(%d)", k)
}

// Delivery is one deliver_sm of the simulator that the ESME acknowledged (see Acked).
type Delivery struct {
	Kind      DeliveryKind
	SystemID  string
	N         uint64 // receipts: the message number
	MessageID string // receipts: the id in the receipt's text (ReceiptIDFormat)
	Copy      int    // receipts: 0 for the receipt, 1..ReceiptDuplicates for its duplicates
	Attempts  int    // deliver_sm sent for it, the acknowledged one included
	Session   uint64 // smpp.Session.ID of the session that acknowledged it
	Body      []byte // the deliver_sm body, without header; shared, do not modify
}

// delivery is a queued deliver_sm: in ready, in flight on a session, or waiting to be retried.
// It is in one of those places at a time.
type delivery struct {
	Delivery               // Attempts guarded by SMSC.mu
	prefer   *smpp.Session // guarded by SMSC.mu: try this session first (nil: any)
	onSent   func()        // dispatcher only: run once, after the first deliver_sm left
}

// Stats are the simulator's counters.
type Stats struct {
	Submits         uint64 `json:"submits"`  // Count
	Accepted        uint64 `json:"accepted"` // Accepted
	Binds           int    `json:"binds"`
	ReceiptsSent    uint64 `json:"receipts_sent"`
	ReceiptsAcked   uint64 `json:"receipts_acked"`
	ReceiptsPending int    `json:"receipts_pending"`
	MOSent          uint64 `json:"mo_sent"`
	MOAcked         uint64 `json:"mo_acked"`
	MOPending       int    `json:"mo_pending"`
}

// Stats returns the current counters (each read atomically, not all at one instant).
func (s *SMSC) Stats() Stats {
	return Stats{Submits: s.count.Load(), Accepted: s.accepted.Load(), Binds: s.Binds(),
		ReceiptsSent: s.rcptSent.Load(), ReceiptsAcked: s.rcptAcked.Load(), ReceiptsPending: s.ReceiptsPending(),
		MOSent: s.moSent.Load(), MOAcked: s.moAcked.Load(), MOPending: int(s.moPending.Load())}
}

// ReceiptsSent returns the number of receipt deliver_sm sent, retries and duplicates included.
func (s *SMSC) ReceiptsSent() uint64 { return s.rcptSent.Load() }

// ReceiptsAcked returns the number of receipts the ESME acknowledged (ESME_ROK), each counted
// once however often it was sent; each of the ReceiptDuplicates copies counts as a receipt.
func (s *SMSC) ReceiptsAcked() uint64 { return s.rcptAcked.Load() }

// ReceiptsPending returns the number of receipts queued and not yet acknowledged (copies
// included): waiting for a receiver, in flight, or waiting to be retried.
func (s *SMSC) ReceiptsPending() int { return int(s.rcptPending.Load()) }

// Acked returns the acknowledged deliveries (receipts and MOs) in acknowledgement order; empty
// unless Config.Record.
func (s *SMSC) Acked() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.acked)
}

// receipt is what a delivery receipt needs from its submit_sm, copied out of the PDU, and the
// outcome settle gives it.
type receipt struct {
	from        *smpp.Session
	systemID    string
	submitted   time.Time
	sub         smpp.Submit // addresses and the first 20 octets of text, copied
	failureOnly bool        // registered_delivery 2

	n       uint64
	stat    string
	state   byte
	errCode int
}

func newReceipt(sess *smpp.Session, m *smpp.Submit, failureOnly bool) *receipt {
	text := m.Payload()
	if len(text) > 20 {
		text = text[:20]
	}
	// The receipt goes back from the destination to the source.
	return &receipt{from: sess, systemID: sess.Account().SystemID, submitted: time.Now(), failureOnly: failureOnly,
		sub: smpp.Submit{SrcTON: m.DstTON, SrcNPI: m.DstNPI, SrcAddr: clone(m.DstAddr),
			DstTON: m.SrcTON, DstNPI: m.SrcNPI, DstAddr: clone(m.SrcAddr), ShortMessage: clone(text)}}
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// settle gives the receipt message n's outcome; false when none is to be sent (failure-only
// receipt, message delivered).
func (rc *receipt) settle(n uint64, stat func(uint64) (string, byte, int)) bool {
	rc.n, rc.stat, rc.state, rc.errCode = n, "DELIVRD", 2, 0
	if stat != nil {
		rc.stat, rc.state, rc.errCode = stat(n)
	}
	return !rc.failureOnly || rc.stat != "DELIVRD"
}

// tagNetworkErrorCode is the network_error_code TLV (SMPP 3.4 §5.3.2.31).
const tagNetworkErrorCode = 0x0423

// receiptBody returns the receipt's deliver_sm body and the id in its text.
func (s *SMSC) receiptBody(rc *receipt) ([]byte, string) {
	const layout = "0601021504" // YYMMDDhhmm
	id := s.cfg.ReceiptIDFormat.Format(rc.n)
	dlvrd := 0
	if rc.stat == "DELIVRD" {
		dlvrd = 1
	}
	m := rc.sub
	m.ESMClass = 0x04 // SMSC delivery receipt
	m.ShortMessage = fmt.Appendf(nil, "id:%s sub:001 dlvrd:%03d submit date:%s done date:%s stat:%s err:%03d text:%s",
		id, dlvrd, rc.submitted.Format(layout), time.Now().Format(layout), rc.stat, rc.errCode, rc.sub.ShortMessage)
	if len(m.ShortMessage) > 254 {
		m.ShortMessage = m.ShortMessage[:254]
	}
	if !s.cfg.ReceiptTextOnly {
		tlvID := id
		if f := s.cfg.ReceiptTLVIDFormat; f != nil {
			tlvID = f.Format(rc.n)
		}
		m.TLVs = smpp.AppendTLV(nil, smpp.TagReceiptedMsgID, append([]byte(tlvID), 0))
		m.TLVs = smpp.AppendTLV(m.TLVs, smpp.TagMessageState, []byte{rc.state})
		// network type 3 (GSM), then the error code
		m.TLVs = smpp.AppendTLV(m.TLVs, tagNetworkErrorCode, []byte{3, byte(rc.errCode >> 8), byte(rc.errCode)})
	}
	return smpp.AppendSubmitPDU(nil, smpp.DeliverSM, 0, &m)[smpp.HeaderLen:], id
}

// queueReceipt queues the receipt and its duplicates; onSent, if set, runs once the first
// deliver_sm of the receipt itself has been sent.
func (s *SMSC) queueReceipt(rc *receipt, onSent func()) {
	body, id := s.receiptBody(rc)
	for c := 0; c <= s.cfg.ReceiptDuplicates; c++ {
		d := &delivery{Delivery: Delivery{Kind: KindReceipt, SystemID: rc.systemID, N: rc.n, MessageID: id, Copy: c, Body: body},
			prefer: rc.from}
		if c == 0 {
			d.onSent = onSent
		}
		s.rcptPending.Add(1)
		s.enqueue(d)
	}
}

// SendMO queues m as a deliver_sm (a mobile-originated message) to systemID: it is delivered to a
// receiver or transceiver session of systemID, now or once one binds, and retried until
// acknowledged, like a receipt. It fails only for input no ESME could be sent (naming the
// field), and after Close (ErrClosed).
func (s *SMSC) SendMO(systemID string, m *smpp.Submit) error {
	body, err := s.moBody(systemID, m)
	if err != nil {
		return err
	}
	return s.queueMO(systemID, [][]byte{body})
}

// moBody checks m and returns its deliver_sm body.
func (s *SMSC) moBody(systemID string, m *smpp.Submit) ([]byte, error) {
	if err := s.checkSystemID(systemID); err != nil {
		return nil, err
	}
	switch {
	case m == nil:
		return nil, errors.New("message: nil")
	case len(m.ShortMessage) > 254:
		return nil, fmt.Errorf("short_message: %d octets, at most 254 (use message_payload)", len(m.ShortMessage))
	}
	body := smpp.AppendSubmitPDU(nil, smpp.DeliverSM, 0, m)[smpp.HeaderLen:]
	var check smpp.Submit
	if err := smpp.ParseSubmit(body, &check); err != nil {
		return nil, fmt.Errorf("deliver_sm: %w", err)
	}
	return body, nil
}

// checkSystemID reports a system_id no ESME could bind with.
func (s *SMSC) checkSystemID(systemID string) error {
	switch {
	case systemID == "":
		return errors.New("system_id: required")
	case !s.cfg.AnyAccount && systemID != s.cfg.SystemID:
		return fmt.Errorf("system_id: %q is not an account of this simulator (%q; or start it with AnyAccount)", systemID, s.cfg.SystemID)
	}
	return nil
}

func (s *SMSC) queueMO(systemID string, bodies [][]byte) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	for _, b := range bodies {
		s.moPending.Add(1)
		s.enqueue(&delivery{Delivery: Delivery{Kind: KindMO, SystemID: systemID, Body: b}})
	}
	return nil
}

// SendMOText queues text from from to to as MO deliver_sm to systemID (see SendMO), encoded as
// smpp.EncodeText does (GSM 7-bit unpacked, else UCS2); a long text becomes concatenated parts
// with a UDH (IE 0x00, 8-bit reference), queued in order. It returns the number of parts. Errors
// name the offending field: system_id, from, to or text.
func (s *SMSC) SendMOText(systemID, from, to, text string) (int, error) {
	if err := s.checkSystemID(systemID); err != nil {
		return 0, err
	}
	var src, dst smpp.Submit
	for _, a := range []struct {
		name, v string
		m       *smpp.Submit
	}{{"from", from, &src}, {"to", to, &dst}} {
		ton, npi, addr, err := address(a.v)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", a.name, err)
		}
		a.m.SrcTON, a.m.SrcNPI, a.m.SrcAddr = ton, npi, addr
	}
	if text == "" {
		return 0, errors.New("text: required")
	}
	parts, dc := smpp.EncodeText(text)
	if len(parts) > 255 {
		return 0, fmt.Errorf("text: too long, %d parts (at most 255)", len(parts))
	}
	ref := byte(s.moRef.Add(1))
	bodies := make([][]byte, len(parts))
	for i, p := range parts {
		m := &smpp.Submit{SrcTON: src.SrcTON, SrcNPI: src.SrcNPI, SrcAddr: src.SrcAddr,
			DstTON: dst.SrcTON, DstNPI: dst.SrcNPI, DstAddr: dst.SrcAddr, DataCoding: dc, ShortMessage: p}
		if len(parts) > 1 {
			m.ESMClass = 0x40 // UDH indicator
			m.ShortMessage = append([]byte{5, 0x00, 3, ref, byte(len(parts)), byte(i + 1)}, p...)
		}
		b, err := s.moBody(systemID, m)
		if err != nil {
			return 0, err
		}
		bodies[i] = b
	}
	return len(parts), s.queueMO(systemID, bodies)
}

// address returns the TON, NPI and digits of a phone number ("+4477..." or "4477...": TON 1
// international; up to 6 digits: TON 0 unknown, a short code), or of an alphanumeric sender
// (TON 5).
func address(v string) (ton, npi byte, addr []byte, err error) {
	switch {
	case v == "":
		return 0, 0, nil, errors.New("required")
	case len(v) > 20:
		return 0, 0, nil, fmt.Errorf("%d characters, at most 20", len(v))
	}
	digits := v
	if digits[0] == '+' {
		digits = digits[1:]
	}
	numeric := digits != ""
	for i := 0; i < len(digits); i++ {
		numeric = numeric && digits[i] >= '0' && digits[i] <= '9'
	}
	switch {
	case numeric && (len(digits) > 6 || v[0] == '+'):
		return 1, 1, []byte(digits), nil
	case numeric:
		return 0, 1, []byte(digits), nil
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7E {
			return 0, 0, nil, errors.New("digits, or printable ASCII for an alphanumeric sender")
		}
	}
	return 5, 0, []byte(v), nil
}

// enqueue makes d ready to send (dropped after Close).
func (s *SMSC) enqueue(d *delivery) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.ready[d.SystemID] = append(s.ready[d.SystemID], d)
	s.mu.Unlock()
	s.kick()
}

// kick wakes the dispatcher: deliveries are ready, a receiver bound, or window room freed up.
func (s *SMSC) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// dispatch is the one goroutine that sends deliveries. Every change that could let one go out
// kicks it after it happened, so a kick is never lost.
func (s *SMSC) dispatch() {
	defer close(s.dispatched)
	var ids []string
	for {
		select {
		case <-s.wake:
		case <-s.quit:
			return
		}
		s.mu.Lock()
		ids = ids[:0]
		for id := range s.ready {
			ids = append(ids, id)
		}
		s.mu.Unlock()
		for _, id := range ids {
			s.sendReady(id)
		}
	}
}

// sendReady sends systemID's ready deliveries until none is left or no session takes one.
func (s *SMSC) sendReady(systemID string) {
	var skip []*smpp.Session // sessions whose window is full, or that are closing
	for {
		s.mu.Lock()
		q := s.ready[systemID]
		if len(q) == 0 || s.closed {
			s.mu.Unlock()
			return
		}
		d := q[0]
		sess := s.pickLocked(systemID, d.prefer, skip)
		if sess == nil {
			s.mu.Unlock()
			return // a kick comes when a session binds or an answer frees room
		}
		d.Attempts++
		s.mu.Unlock()
		// d stays at the head of the queue until it is sent: only this goroutine takes from the
		// head, others append, so putting it back (which copied the queue) is never needed.
		err := sess.Request(smpp.DeliverSM, d.Body, func(st smpp.Status, err error) { s.delivered(d, sess, st, err) })
		s.mu.Lock()
		if err != nil { // ErrWindowFull or ErrSessionClosed: nothing was sent; try another session
			d.Attempts--
			s.mu.Unlock()
			skip = append(skip, sess)
			continue
		}
		switch q = s.ready[systemID]; {
		case len(q) == 0 || q[0] != d: // Close emptied the queue
		case len(q) == 1:
			delete(s.ready, systemID)
		default:
			q[0] = nil
			s.ready[systemID] = q[1:]
		}
		s.mu.Unlock()
		if d.Kind == KindReceipt {
			s.rcptSent.Add(1)
		} else {
			s.moSent.Add(1)
		}
		if f := d.onSent; f != nil {
			d.onSent = nil
			f()
		}
	}
}

// pickLocked returns prefer if it is a receiving session of systemID not in skip, else the first
// such session, else nil. s.mu held.
func (s *SMSC) pickLocked(systemID string, prefer *smpp.Session, skip []*smpp.Session) *smpp.Session {
	list := s.receivers[systemID]
	if prefer != nil && slices.Contains(list, prefer) && !slices.Contains(skip, prefer) {
		return prefer
	}
	for _, r := range list {
		if !slices.Contains(skip, r) {
			return r
		}
	}
	return nil
}

// delivered is the RequestDone of d's deliver_sm on sess: ESME_ROK completes d, anything else
// sends it again after RetryBackoff, to any receiving session.
func (s *SMSC) delivered(d *delivery, sess *smpp.Session, st smpp.Status, err error) {
	defer s.kick() // the answer freed window room on sess
	if err == nil && st == smpp.StatusOK {
		if d.Kind == KindReceipt {
			s.rcptAcked.Add(1)
			s.rcptPending.Add(-1)
		} else {
			s.moAcked.Add(1)
			s.moPending.Add(-1)
		}
		if s.cfg.Record {
			s.mu.Lock()
			a := d.Delivery
			a.Session = sess.ID()
			s.acked = append(s.acked, a)
			s.mu.Unlock()
		}
		return
	}
	s.mu.Lock()
	d.prefer = nil
	closed := s.closed
	attempts := d.Attempts
	s.mu.Unlock()
	if closed {
		return
	}
	s.log.Debug("deliver_sm not acknowledged, retrying", "kind", d.Kind.String(), "system_id", d.SystemID,
		"id", d.MessageID, "attempts", attempts, "status", st.String(), "err", err)
	s.sched.after(s.cfg.RetryBackoff, func() { s.enqueue(d) })
}
