package smpp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Delivery receipts: how smppd recognises, reads and rewrites the deliver_sm an upstream SMSC
// sends for a message it accepted, and how it turns the receipt's id into the forms under which
// the submit_sm_resp's id may have been stored. Every function here is pure and allocates nothing
// beyond what the caller's dst needs.

var (
	// ErrNoReceiptID is returned by ParseReceipt for a deliver_sm that carries neither a
	// receipted_message_id TLV nor an id: field in its text: it cannot be correlated.
	ErrNoReceiptID = errors.New("delivery receipt carries no message id (no receipted_message_id TLV, no id: field)")
	// ErrReceiptTooLong is returned by AppendRewrittenReceipt when the text with the new id would
	// not fit: more than 254 octets in short_message, or 65535 in message_payload.
	ErrReceiptTooLong = errors.New("rewritten delivery receipt text exceeds its field's length")
	// ErrInvalidReceiptID is returned by AppendRewrittenReceipt for a new id that could not be
	// written into receipt text and read back: it must be 1 to MaxIDLen octets of ASCII letters,
	// digits and the punctuation ! " # % & ' ( ) * + , - . / ; < = > ? (which GSM 03.38 encodes as
	// ASCII does; no spaces, no ':').
	ErrInvalidReceiptID = errors.New("receipt id must be 1-64 ASCII letters, digits or GSM-safe punctuation other than ':'")
)

// MaxIDLen is the longest message id in octets: SMPP 3.4 message_id and receipted_message_id
// are C-Octet Strings of at most 65 octets, the NUL included.
const MaxIDLen = 64

// IsReceipt reports whether a deliver_sm is a delivery receipt or delivery acknowledgement: its
// esm_class message type (esm_class & 0x3C) is 0x04 SMSC delivery receipt, 0x08 SME delivery
// acknowledgement, 0x10 SME manual/user acknowledgement or 0x20 intermediate delivery
// notification, or it carries a receipted_message_id TLV.
func IsReceipt(s *Submit) bool {
	switch s.ESMClass & 0x3C {
	case 0x04, 0x08, 0x10, 0x20:
		return true
	}
	_, ok := FindTLV(s.TLVs, TagReceiptedMsgID)
	return ok
}

// Receipt is the parsed content of a delivery receipt. Its byte slices alias the PDU it was
// parsed from (capped, so appending to one copies rather than overwriting the PDU).
type Receipt struct {
	ID       []byte // the id to correlate: TLVID if present, else TextID
	TextID   []byte // the value of the text's id: field (nil if none or empty)
	TLVID    []byte // the receipted_message_id TLV value up to its NUL (nil if none or empty)
	Stat     []byte // the text's stat: value (DELIVRD, UNDELIV, ...), nil if none
	Err      []byte // the text's err: value, nil if none
	State    byte   // message_state TLV; HasState says whether present
	HasState bool   // a message_state TLV of one octet is present
}

// ParseReceipt extracts a receipt's fields from s: the TLVs receipted_message_id and
// message_state, and the id:, stat: and err: fields of the text in short_message (or in
// message_payload when short_message is empty).
//
// The text format is the de-facto one of SMPP 3.4 Appendix B, "id:IIII sub:SSS dlvrd:DDD submit
// date:YYMMDDhhmm done date:YYMMDDhhmm stat:DDDDDDD err:E text:...", read leniently, as real SMSCs
// vary: a field name starts the text or follows whitespace (space, tab, CR, LF or NUL), matches
// in any case ("ID:", "Stat:"), and is followed directly by ':'; fields may be missing, extra,
// or reordered, and separated by several spaces. A value runs to the next whitespace; when that
// is empty, the next word is the value unless it holds a ':' (so "id: 123" reads 123 and
// "err: text:" reads nothing). The first occurrence of a field wins. Everything from a "text:"
// field on is free text and never read, so an "id:" inside it does not count. The status field
// may also be spelled "status:", the error field "error:".
//
// The text is read in data codings whose octets for ASCII letters, digits, ':' and space are
// ASCII (GSM 7-bit unpacked, IA5, Latin-1, Cyrillic, Hebrew, 8-bit data). In UCS2 and other
// codings the text is not read (TextID, Stat and Err are nil): such a receipt correlates through
// its receipted_message_id TLV alone. AppendRewrittenReceipt does rewrite UCS2 text.
//
// It returns ErrNoReceiptID, with whatever fields it found, when neither the TLV nor the text
// carries an id.
func ParseReceipt(s *Submit) (Receipt, error) {
	var r Receipt
	if v, ok := FindTLV(s.TLVs, TagReceiptedMsgID); ok {
		if i := bytes.IndexByte(v, 0); i >= 0 {
			v = v[:i]
		}
		if len(v) > 0 {
			r.TLVID = v[:len(v):len(v)]
		}
	}
	if v, ok := FindTLV(s.TLVs, TagMessageState); ok && len(v) == 1 {
		r.State, r.HasState = v[0], true
	}
	if textWidth(s.DataCoding) == 1 {
		t := s.Payload()
		f := scanReceipt(receiptText{t, 1})
		r.TextID = f.id.bytes(t)
		r.Stat = f.stat.bytes(t)
		r.Err = f.err.bytes(t)
	}
	r.ID = r.TLVID
	if r.ID == nil {
		r.ID = r.TextID
	}
	if r.ID == nil {
		return r, ErrNoReceiptID
	}
	return r, nil
}

// AppendRewrittenReceipt appends to dst the body (no header) of a deliver_sm equal to the one s
// views except that the text's id: value (where the text has an id: field, as ParseReceipt reads
// it) and every receipted_message_id TLV carry newID; the TLV is appended after the others when
// absent, so text and TLV agree. Every other octet is unchanged: the mandatory fields, the text
// around the id, the other TLVs and their order. sm_length, or the message_payload length when
// the text is there, is updated.
//
// The text is rewritten in the codings ParseReceipt reads, and in UCS2 (data_coding 0x08, and the
// GSM 03.38 UCS2 groups), where the id: field is found among the code units 0x0000-0x007F and
// newID is written one unit per character. In other codings (JIS, ISO-2022-JP, KS C 5601,
// pictogram, compressed, reserved) the text is left alone and only the TLV changes.
//
// Errors, on which dst is returned unchanged: ErrInvalidReceiptID for an unusable newID,
// ErrReceiptTooLong when the rewritten text would exceed 254 octets in short_message (it is not
// moved to message_payload) or 65535 in message_payload, and a *BodyError for malformed TLVs.
// dst must not overlap the buffer s views.
func AppendRewrittenReceipt(dst []byte, s *Submit, newID []byte) ([]byte, error) {
	if !validReceiptID(newID) {
		return dst, ErrInvalidReceiptID
	}
	if err := checkTLVs(s.TLVs); err != nil {
		return dst, err
	}
	sm := s.ShortMessage
	smLen := len(sm)
	var id span
	var payload bool // the id is rewritten in message_payload
	w := textWidth(s.DataCoding)
	if w != 0 {
		if len(sm) > 0 {
			if id = scanReceipt(receiptText{sm, w}).id; id.ok {
				smLen += id.grow(newID, w)
			}
		} else if p, ok := FindTLV(s.TLVs, TagMessagePayload); ok {
			id = scanReceipt(receiptText{p, w}).id
			payload = id.ok
			if id.ok && len(p)+id.grow(newID, w) > 0xFFFF {
				return dst, ErrReceiptTooLong
			}
		}
	}
	if smLen > 254 {
		return dst, ErrReceiptTooLong
	}

	dst = appendCString(dst, s.ServiceType)
	dst = append(dst, s.SrcTON, s.SrcNPI)
	dst = appendCString(dst, s.SrcAddr)
	dst = append(dst, s.DstTON, s.DstNPI)
	dst = appendCString(dst, s.DstAddr)
	dst = append(dst, s.ESMClass, s.ProtocolID, s.PriorityFlag)
	dst = appendCString(dst, s.ScheduleTime)
	dst = appendCString(dst, s.ValidityPeriod)
	dst = append(dst, s.RegisteredDelivery, s.ReplaceIfPresent, s.DataCoding, s.DefaultMsgID)
	dst = append(dst, byte(smLen))
	if id.ok && !payload {
		dst = id.appendWith(dst, sm, newID, w)
	} else {
		dst = append(dst, sm...)
	}

	tlvs := s.TLVs
	sawID := false
	for len(tlvs) > 0 { // well-formed: checked above
		tag := binary.BigEndian.Uint16(tlvs)
		l := int(binary.BigEndian.Uint16(tlvs[2:]))
		switch {
		case tag == TagReceiptedMsgID:
			dst = appendIDTLV(dst, newID)
			sawID = true
		case tag == TagMessagePayload && payload:
			v := tlvs[4 : 4+l]
			dst = binary.BigEndian.AppendUint16(dst, tag)
			dst = binary.BigEndian.AppendUint16(dst, uint16(len(v)+id.grow(newID, w)))
			dst = id.appendWith(dst, v, newID, w)
			payload = false // only the first, the one Payload returns
		default:
			dst = append(dst, tlvs[:4+l]...)
		}
		tlvs = tlvs[4+l:]
	}
	if !sawID {
		dst = appendIDTLV(dst, newID)
	}
	return dst, nil
}

// appendIDTLV appends a receipted_message_id TLV holding id and its NUL.
func appendIDTLV(dst, id []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, TagReceiptedMsgID)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(id)+1))
	return append(append(dst, id...), 0)
}

// validReceiptID reports whether id can be written into receipt text and read back the same in
// every coding AppendRewrittenReceipt rewrites: see ErrInvalidReceiptID.
func validReceiptID(id []byte) bool {
	if len(id) == 0 || len(id) > MaxIDLen {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x21 && c <= 0x3F && c != '$' && c != ':') {
			return false
		}
	}
	return true
}

// textWidth says how receipt text in data_coding dc is read: 1 when one octet is one character
// and ASCII letters, digits, ':' and space have their ASCII octets; 2 for UCS2; 0 when the text is
// left alone. Above 0x0F it follows the GSM 03.38 data coding scheme groups (as content.CodingOf).
func textWidth(dc byte) int {
	switch {
	case dc == 0x08:
		return 2
	case dc < 0x10:
		switch dc {
		case 0x00, 0x01, 0x02, 0x03, 0x04, 0x06, 0x07: // default (GSM 7-bit), IA5, 8-bit, Latin-1, 8-bit, Cyrillic, Hebrew
			return 1
		}
		return 0 // JIS, pictogram, ISO-2022-JP, JIS X 0212, KS C 5601, reserved
	case dc < 0x80: // general data coding and automatic deletion groups
		if dc&0x20 != 0 {
			return 0 // compressed
		}
		switch dc & 0x0C {
		case 0x00, 0x04: // GSM 7-bit, 8-bit
			return 1
		case 0x08:
			return 2
		}
		return 0
	case dc >= 0xC0 && dc < 0xE0: // message waiting, GSM 7-bit
		return 1
	case dc >= 0xE0 && dc < 0xF0: // message waiting, UCS2
		return 2
	case dc >= 0xF0: // data coding / message class: GSM 7-bit or 8-bit
		return 1
	}
	return 0
}

// receiptText is receipt text as code units: octets (w 1) or big-endian UCS2 (w 2).
type receiptText struct {
	b []byte
	w int
}

func (t receiptText) units() int { return len(t.b) / t.w }

// at returns unit i as ASCII; a UCS2 unit above 0x00FF reads as 0x80, which is no letter,
// digit, space or ':'.
func (t receiptText) at(i int) byte {
	if t.w == 1 {
		return t.b[i]
	}
	if t.b[2*i] != 0 {
		return 0x80
	}
	return t.b[2*i+1]
}

func isReceiptSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == 0 }

// span is a field value in a receiptText, as unit indices [start, end); ok says the field exists.
type span struct {
	start, end int
	ok         bool
}

// bytes returns the value of a span of one-octet text t: nil when absent or empty.
func (v span) bytes(t []byte) []byte {
	if !v.ok || v.start == v.end {
		return nil
	}
	return t[v.start:v.end:v.end]
}

// grow is how many octets longer text becomes when the span's value is replaced by id.
func (v span) grow(id []byte, w int) int { return (len(id) - (v.end - v.start)) * w }

// appendWith appends text with the span's value replaced by id, encoded in units of w octets.
func (v span) appendWith(dst, text, id []byte, w int) []byte {
	dst = append(dst, text[:v.start*w]...)
	if w == 1 {
		dst = append(dst, id...)
	} else {
		for _, c := range id {
			dst = append(dst, 0, c)
		}
	}
	return append(dst, text[v.end*w:]...)
}

// receiptFields are the values ParseReceipt reads from receipt text.
type receiptFields struct{ id, stat, err span }

// scanReceipt finds the id:, stat: and err: values in t's header, the words before a text:
// field, by the rules ParseReceipt documents. A word is a run of non-whitespace units; a word
// holding a ':' is a field whose name is what precedes its first ':'.
func scanReceipt(t receiptText) receiptFields {
	var f receiptFields
	n := t.units()
	i := 0
	for {
		for i < n && isReceiptSpace(t.at(i)) {
			i++
		}
		if i >= n {
			return f
		}
		start, colon := i, -1
		for i < n && !isReceiptSpace(t.at(i)) {
			if colon < 0 && t.at(i) == ':' {
				colon = i
			}
			i++
		}
		if colon < 0 {
			continue
		}
		var dst *span
		switch {
		case t.nameIs(start, colon, "text"):
			return f
		case t.nameIs(start, colon, "id"):
			dst = &f.id
		case t.nameIs(start, colon, "stat"), t.nameIs(start, colon, "status"):
			dst = &f.stat
		case t.nameIs(start, colon, "err"), t.nameIs(start, colon, "error"):
			dst = &f.err
		default:
			continue
		}
		v := span{colon + 1, i, true}
		if v.start == v.end { // "id: 123": the value is the next word unless that is a field
			j := i
			for j < n && isReceiptSpace(t.at(j)) {
				j++
			}
			k, field := j, false
			for k < n && !isReceiptSpace(t.at(k)) {
				field = field || t.at(k) == ':'
				k++
			}
			if j < k && !field {
				v = span{j, k, true}
				i = k
			}
		}
		if !dst.ok {
			*dst = v
		}
	}
}

// nameIs reports whether units [start, end) spell name (lower-case ASCII) in any case.
func (t receiptText) nameIs(start, end int, name string) bool {
	if end-start != len(name) {
		return false
	}
	for k := 0; k < len(name); k++ {
		c := t.at(start + k)
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != name[k] {
			return false
		}
	}
	return true
}

// IDMode says how an upstream writes message ids in receipts relative to its submit_sm_resp
// (as Kannel's msg-id-type does). The zero value is IDAuto.
type IDMode uint8

// ID modes, for IDCandidates.
const (
	IDAuto           IDMode = iota // the id as is, then its decimal->hex and hex->decimal conversions
	IDSame                         // the receipt carries the submit_sm_resp's id (modulo case and leading zeros)
	IDReceiptDecimal               // the submit_sm_resp id is hex, the receipt's is its decimal value
	IDReceiptHex                   // the submit_sm_resp id is decimal, the receipt's is its hex value
)

var idModeNames = [...]string{IDAuto: "auto", IDSame: "same", IDReceiptDecimal: "receipt_decimal", IDReceiptHex: "receipt_hex"}

// ParseIDMode parses an IDMode's String form: "auto", "same", "receipt_decimal" or
// "receipt_hex", in any case.
func ParseIDMode(s string) (IDMode, error) {
	for m, name := range idModeNames {
		if strings.EqualFold(s, name) {
			return IDMode(m), nil
		}
	}
	return 0, fmt.Errorf("unknown receipt id mode %q: want auto, same, receipt_decimal or receipt_hex", s)
}

func (m IDMode) String() string {
	if int(m) < len(idModeNames) {
		return idModeNames[m]
	}
	return "IDMode(" + strconv.Itoa(int(m)) + ")"
}

// MarshalText implements encoding.TextMarshaler (for configuration files).
func (m IDMode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseIDMode.
func (m *IDMode) UnmarshalText(b []byte) error {
	v, err := ParseIDMode(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// CanonicalID appends to dst the canonical form of an upstream message id, the form ids are
// stored and looked up in: surrounding spaces, tabs, CR, LF and NULs trimmed, leading zeros
// removed (an all-zero id becomes "0"; a zero a blank follows stays, so the form is stable:
// CanonicalID of a canonical id is itself), ASCII letters lower-cased. An empty or blank id
// appends nothing.
func CanonicalID(dst, id []byte) []byte {
	for _, c := range canonicalSpan(id) {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// canonicalSpan returns id trimmed and without leading zeros, not yet lower-cased.
func canonicalSpan(id []byte) []byte {
	i, j := 0, len(id)
	for i < j && isReceiptSpace(id[i]) {
		i++
	}
	for j > i && isReceiptSpace(id[j-1]) {
		j--
	}
	for i < j-1 && id[i] == '0' && !isReceiptSpace(id[i+1]) { // never leave a leading blank
		i++
	}
	return id[i:j]
}

// IDCands holds the candidates IDCandidates finds: up to three canonical ids of up to MaxIDLen
// octets, in fixed arrays inside the struct, so filling one allocates nothing. Declare one as a
// local variable when the slices At returns do not escape (a map index m[string(c.At(i))] does
// not; passing them to an interface method does, and moves the local to the heap), else keep one
// in a long-lived per-goroutine struct and reuse it. The zero value is empty. Not safe for
// concurrent use; At's slices alias c and change at the next IDCandidates call.
type IDCands struct {
	n   int
	len [3]uint8
	buf [3][MaxIDLen]byte
}

// Len returns the number of candidates.
func (c *IDCands) Len() int { return c.n }

// At returns candidate i (0 <= i < Len()), most likely first.
func (c *IDCands) At(i int) []byte {
	l := int(c.len[i])
	return c.buf[i][:l:l]
}

// add appends candidate b (canonical, at most MaxIDLen octets) unless it is already there.
func (c *IDCands) add(b []byte) {
	for i := 0; i < c.n; i++ {
		if bytes.Equal(c.At(i), b) {
			return
		}
	}
	c.len[c.n] = uint8(copy(c.buf[c.n][:], b))
	c.n++
}

// addCanonical adds the lower-cased form of canonical span cn.
func (c *IDCands) addCanonical(cn []byte) {
	var tmp [MaxIDLen]byte
	c.add(CanonicalID(tmp[:0], cn))
}

// addUint adds v written in base 10 or 16 (lower case, no leading zeros).
func (c *IDCands) addUint(v uint64, base int) {
	var tmp [20]byte
	c.add(strconv.AppendUint(tmp[:0], v, base))
}

// IDCandidates fills c, replacing its contents, with the canonical forms (see CanonicalID) under
// which a receipt's id may have been stored at submit time, most likely first:
//
//   - IDSame: CanonicalID(id).
//   - IDReceiptDecimal: id is decimal; the hex form of its value.
//   - IDReceiptHex: id is hex; the decimal form of its value.
//   - IDAuto (and unknown modes): CanonicalID(id); then its hex form if id is all decimal digits;
//     then its decimal form if id is all hex digits; without duplicates ("7" gives one candidate,
//     "10" gives "10", "a" and "16").
//
// Conversions apply only to values that fit in 64 bits (20 decimal or 16 hex digits after the
// leading zeros); longer ids, and ids the mode cannot convert (a non-decimal id in
// IDReceiptDecimal), are looked up as they are. An empty id, or one longer than MaxIDLen after
// trimming, has no candidates: no submit_sm_resp can have carried it.
func IDCandidates(c *IDCands, id []byte, mode IDMode) {
	c.n = 0
	cn := canonicalSpan(id)
	if len(cn) == 0 || len(cn) > MaxIDLen {
		return
	}
	dec, isDec := parseUintID(cn, 10)
	hex, isHex := parseUintID(cn, 16)
	switch mode {
	case IDSame:
		c.addCanonical(cn)
	case IDReceiptDecimal:
		if isDec {
			c.addUint(dec, 16)
		} else {
			c.addCanonical(cn)
		}
	case IDReceiptHex:
		if isHex {
			c.addUint(hex, 10)
		} else {
			c.addCanonical(cn)
		}
	default:
		c.addCanonical(cn)
		if isDec {
			c.addUint(dec, 16)
		}
		if isHex {
			c.addUint(hex, 10)
		}
	}
}

// parseUintID parses b, all digits of base (10 or 16, either case), as a uint64; ok is false
// for any other octet or on overflow.
func parseUintID(b []byte, base uint64) (v uint64, ok bool) {
	for _, c := range b {
		var d uint64
		switch {
		case c >= '0' && c <= '9':
			d = uint64(c - '0')
		case base == 16 && c >= 'a' && c <= 'f':
			d = uint64(c-'a') + 10
		case base == 16 && c >= 'A' && c <= 'F':
			d = uint64(c-'A') + 10
		default:
			return 0, false
		}
		if v > (^uint64(0)-d)/base {
			return 0, false
		}
		v = v*base + d
	}
	return v, len(b) > 0
}
