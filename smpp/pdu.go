package smpp

import (
	"encoding/binary"
	"errors"

	"github.com/linxGnu/gosmpp/data"
)

// CommandID is an SMPP command_id (gosmpp's codec type).
type CommandID = data.CommandIDType

// Status is an SMPP command_status (gosmpp's codec type; String() gives ESME_… names).
type Status = data.CommandStatusType

// HeaderLen is the size of the SMPP PDU header.
const HeaderLen = 16

// Command ids smppd handles, re-exported from gosmpp for brevity.
const (
	GenericNack         = data.GENERIC_NACK
	BindReceiver        = data.BIND_RECEIVER
	BindReceiverResp    = data.BIND_RECEIVER_RESP
	BindTransmitter     = data.BIND_TRANSMITTER
	BindTransmitterResp = data.BIND_TRANSMITTER_RESP
	BindTransceiver     = data.BIND_TRANSCEIVER
	BindTransceiverResp = data.BIND_TRANSCEIVER_RESP
	SubmitSM            = data.SUBMIT_SM
	SubmitSMResp        = data.SUBMIT_SM_RESP
	DeliverSM           = data.DELIVER_SM
	DeliverSMResp       = data.DELIVER_SM_RESP
	Unbind              = data.UNBIND
	UnbindResp          = data.UNBIND_RESP
	EnquireLink         = data.ENQUIRE_LINK
	EnquireLinkResp     = data.ENQUIRE_LINK_RESP
)

// Status codes smppd returns.
const (
	StatusOK            = data.ESME_ROK
	StatusInvMsgLen     = data.ESME_RINVMSGLEN
	StatusInvCmdLen     = data.ESME_RINVCMDLEN
	StatusInvCmdID      = data.ESME_RINVCMDID
	StatusInvBindStatus = data.ESME_RINVBNDSTS
	StatusAlreadyBound  = data.ESME_RALYBND
	StatusSysErr        = data.ESME_RSYSERR
	StatusInvSrcAddr    = data.ESME_RINVSRCADR
	StatusInvDstAddr    = data.ESME_RINVDSTADR
	StatusBindFail      = data.ESME_RBINDFAIL
	StatusMsgQFull      = data.ESME_RMSGQFUL
	StatusInvServType   = data.ESME_RINVSERTYP
	StatusInvEsmClass   = data.ESME_RINVESMCLASS
	StatusThrottled     = data.ESME_RTHROTTLED
	StatusInvSched      = data.ESME_RINVSCHED
	StatusInvExpiry     = data.ESME_RINVEXPIRY
	StatusInvOptParam   = data.ESME_RINVOPTPARSTREAM
	StatusTempAppErr    = data.ESME_RX_T_APPN
)

// Header is the fixed 16-octet PDU header.
type Header struct {
	Length uint32
	ID     CommandID
	Status Status
	Seq    uint32
}

// ParseHeader decodes the first 16 octets of b, which must hold at least HeaderLen bytes.
func ParseHeader(b []byte) Header {
	_ = b[15]
	return Header{
		Length: binary.BigEndian.Uint32(b),
		ID:     CommandID(binary.BigEndian.Uint32(b[4:])),
		Status: Status(binary.BigEndian.Uint32(b[8:])),
		Seq:    binary.BigEndian.Uint32(b[12:]),
	}
}

// AppendHeader appends h to dst.
func AppendHeader(dst []byte, h Header) []byte {
	dst = binary.BigEndian.AppendUint32(dst, h.Length)
	dst = binary.BigEndian.AppendUint32(dst, uint32(h.ID))
	dst = binary.BigEndian.AppendUint32(dst, uint32(h.Status))
	return binary.BigEndian.AppendUint32(dst, h.Seq)
}

// AppendPDU appends a whole PDU with the given header fields and body; Length is computed.
func AppendPDU(dst []byte, id CommandID, status Status, seq uint32, body []byte) []byte {
	dst = AppendHeader(dst, Header{Length: uint32(HeaderLen + len(body)), ID: id, Status: status, Seq: seq})
	return append(dst, body...)
}

// AppendSubmitSMResp appends a submit_sm_resp (or any *_resp whose body is one C-octet string).
// On an error status the body is empty, as SMPP 3.4 §4.4.2 allows.
func AppendSubmitSMResp(dst []byte, id CommandID, status Status, seq uint32, messageID []byte) []byte {
	if status != StatusOK {
		return AppendHeader(dst, Header{Length: HeaderLen, ID: id, Status: status, Seq: seq})
	}
	dst = AppendHeader(dst, Header{Length: uint32(HeaderLen + len(messageID) + 1), ID: id, Status: status, Seq: seq})
	dst = append(dst, messageID...)
	return append(dst, 0)
}

// IsResponse reports whether id is a response command (high bit set).
func IsResponse(id CommandID) bool { return uint32(id)&0x80000000 != 0 }

// ResponseID returns the response command id of request id.
func ResponseID(id CommandID) CommandID { return CommandID(uint32(id) | 0x80000000) }

// Optional parameter tags smppd looks at.
const (
	TagSarMsgRefNum     = 0x020C
	TagSarTotalSegments = 0x020E
	TagSarSegmentSeqnum = 0x020F
	TagMessagePayload   = 0x0424
	TagReceiptedMsgID   = 0x001E
	TagMessageState     = 0x0427
)

// errors of the submit_sm decoder; statusOf maps them to command_status.
var (
	errServiceType = errors.New("service_type not terminated within 6 octets")
	errSrcAddr     = errors.New("source_addr not terminated within 21 octets")
	errDstAddr     = errors.New("destination_addr missing or not terminated within 21 octets")
	errSched       = errors.New("schedule_delivery_time not terminated within 17 octets")
	errValidity    = errors.New("validity_period not terminated within 17 octets")
	errShort       = errors.New("body ends before the mandatory fields")
	errSMLength    = errors.New("sm_length exceeds 254 or the body")
	errBothPayload = errors.New("short_message and message_payload both set")
	errTLV         = errors.New("malformed optional parameter")
)

// BodyError is a submit_sm decoding failure with the status to answer it with.
type BodyError struct {
	Status Status
	Err    error
}

func (e *BodyError) Error() string { return e.Err.Error() }
func (e *BodyError) Unwrap() error { return e.Err }

// Submit is a zero-copy view of a submit_sm (or deliver_sm, same layout) body.
// Its slices alias the buffer it was parsed from.
type Submit struct {
	ServiceType        []byte
	SrcTON, SrcNPI     byte
	SrcAddr            []byte
	DstTON, DstNPI     byte
	DstAddr            []byte
	ESMClass           byte
	ProtocolID         byte
	PriorityFlag       byte
	ScheduleTime       []byte
	ValidityPeriod     []byte
	RegisteredDelivery byte
	ReplaceIfPresent   byte
	DataCoding         byte
	DefaultMsgID       byte
	ShortMessage       []byte
	// TLVs is the raw optional parameter block.
	TLVs []byte
}

// cstring returns the bytes before the NUL in b within max octets (NUL included) and the rest.
func cstring(b []byte, max int) (s, rest []byte, ok bool) {
	n := len(b)
	if n > max {
		n = max
	}
	for i := 0; i < n; i++ {
		if b[i] == 0 {
			return b[:i], b[i+1:], true
		}
	}
	return nil, b, false
}

// ParseSubmit decodes body (without header) into s. Errors are *BodyError.
func ParseSubmit(body []byte, s *Submit) error {
	var ok bool
	b := body
	if s.ServiceType, b, ok = cstring(b, 6); !ok {
		return &BodyError{StatusInvServType, errServiceType}
	}
	if len(b) < 2 {
		return &BodyError{StatusInvSrcAddr, errShort}
	}
	s.SrcTON, s.SrcNPI = b[0], b[1]
	if s.SrcAddr, b, ok = cstring(b[2:], 21); !ok {
		return &BodyError{StatusInvSrcAddr, errSrcAddr}
	}
	if len(b) < 2 {
		return &BodyError{StatusInvDstAddr, errShort}
	}
	s.DstTON, s.DstNPI = b[0], b[1]
	if s.DstAddr, b, ok = cstring(b[2:], 21); !ok || len(s.DstAddr) == 0 {
		return &BodyError{StatusInvDstAddr, errDstAddr}
	}
	if len(b) < 3 {
		return &BodyError{StatusInvMsgLen, errShort}
	}
	s.ESMClass, s.ProtocolID, s.PriorityFlag = b[0], b[1], b[2]
	if s.ScheduleTime, b, ok = cstring(b[3:], 17); !ok {
		return &BodyError{StatusInvSched, errSched}
	}
	if s.ValidityPeriod, b, ok = cstring(b, 17); !ok {
		return &BodyError{StatusInvExpiry, errValidity}
	}
	if len(b) < 5 {
		return &BodyError{StatusInvMsgLen, errShort}
	}
	s.RegisteredDelivery, s.ReplaceIfPresent, s.DataCoding, s.DefaultMsgID = b[0], b[1], b[2], b[3]
	n := int(b[4])
	b = b[5:]
	if n > 254 || n > len(b) {
		return &BodyError{StatusInvMsgLen, errSMLength}
	}
	s.ShortMessage, s.TLVs = b[:n], b[n:]
	if err := checkTLVs(s.TLVs); err != nil {
		return err
	}
	if n > 0 {
		if _, ok := FindTLV(s.TLVs, TagMessagePayload); ok {
			return &BodyError{StatusInvMsgLen, errBothPayload}
		}
	}
	return nil
}

func checkTLVs(b []byte) error {
	for len(b) > 0 {
		if len(b) < 4 {
			return &BodyError{StatusInvOptParam, errTLV}
		}
		l := int(binary.BigEndian.Uint16(b[2:]))
		if 4+l > len(b) {
			return &BodyError{StatusInvOptParam, errTLV}
		}
		b = b[4+l:]
	}
	return nil
}

// FindTLV returns the value of the first optional parameter with tag in a well-formed TLV block.
func FindTLV(tlvs []byte, tag uint16) ([]byte, bool) {
	for len(tlvs) >= 4 {
		t := binary.BigEndian.Uint16(tlvs)
		l := int(binary.BigEndian.Uint16(tlvs[2:]))
		if 4+l > len(tlvs) {
			return nil, false
		}
		if t == tag {
			return tlvs[4 : 4+l], true
		}
		tlvs = tlvs[4+l:]
	}
	return nil, false
}

// Payload returns the message bytes: short_message, or message_payload when short_message is empty.
func (s *Submit) Payload() []byte {
	if len(s.ShortMessage) > 0 {
		return s.ShortMessage
	}
	p, _ := FindTLV(s.TLVs, TagMessagePayload)
	return p
}

// Concat identifies one segment of a concatenated message.
type Concat struct {
	Ref   uint16
	Total byte
	Seq   byte
}

// Concat returns the concatenation info from the UDH (IE 0x00 8-bit or 0x08 16-bit reference)
// or from the SAR TLVs; ok is false for a single-part message.
func (s *Submit) Concat() (c Concat, ok bool) {
	if s.ESMClass&0x40 != 0 {
		if c, ok = udhConcat(s.Payload()); ok {
			return c, true
		}
	}
	ref, ok1 := FindTLV(s.TLVs, TagSarMsgRefNum)
	tot, ok2 := FindTLV(s.TLVs, TagSarTotalSegments)
	seq, ok3 := FindTLV(s.TLVs, TagSarSegmentSeqnum)
	if ok1 && ok2 && ok3 && len(ref) == 2 && len(tot) == 1 && len(seq) == 1 && tot[0] > 1 {
		return Concat{Ref: binary.BigEndian.Uint16(ref), Total: tot[0], Seq: seq[0]}, true
	}
	return Concat{}, false
}

func udhConcat(p []byte) (Concat, bool) {
	if len(p) < 1 {
		return Concat{}, false
	}
	udhl := int(p[0])
	if udhl+1 > len(p) {
		return Concat{}, false
	}
	ies := p[1 : 1+udhl]
	for len(ies) >= 2 {
		iei, l := ies[0], int(ies[1])
		if 2+l > len(ies) {
			return Concat{}, false
		}
		v := ies[2 : 2+l]
		switch {
		case iei == 0x00 && l == 3 && v[1] > 1:
			return Concat{Ref: uint16(v[0]), Total: v[1], Seq: v[2]}, true
		case iei == 0x08 && l == 4 && v[2] > 1:
			return Concat{Ref: binary.BigEndian.Uint16(v), Total: v[2], Seq: v[3]}, true
		}
		ies = ies[2+l:]
	}
	return Concat{}, false
}

// Segments is the number of SMS segments this submit costs, for throughput accounting:
// one for short_message, ceil(len/per-segment) for a message_payload.
func (s *Submit) Segments() int {
	if len(s.ShortMessage) > 0 {
		return 1
	}
	p := s.Payload()
	single, per := 140, 134 // 8-bit and UCS2: 140 octets, 134 per part after a 6-octet UDH
	if s.DataCoding == 0 || s.DataCoding == 1 {
		single, per = 160, 153 // GSM 7-bit, one octet per character as submitted
	}
	if len(p) <= single {
		return 1
	}
	return (len(p) + per - 1) / per
}

func appendCString(dst, s []byte) []byte { return append(append(dst, s...), 0) }

// AppendSubmitPDU appends a whole submit_sm (or deliver_sm, by id) encoding s, with seq.
// sm_length is len(s.ShortMessage); TLVs are appended raw.
func AppendSubmitPDU(dst []byte, id CommandID, seq uint32, s *Submit) []byte {
	start := len(dst)
	dst = AppendHeader(dst, Header{ID: id, Seq: seq})
	dst = appendCString(dst, s.ServiceType)
	dst = append(dst, s.SrcTON, s.SrcNPI)
	dst = appendCString(dst, s.SrcAddr)
	dst = append(dst, s.DstTON, s.DstNPI)
	dst = appendCString(dst, s.DstAddr)
	dst = append(dst, s.ESMClass, s.ProtocolID, s.PriorityFlag)
	dst = appendCString(dst, s.ScheduleTime)
	dst = appendCString(dst, s.ValidityPeriod)
	dst = append(dst, s.RegisteredDelivery, s.ReplaceIfPresent, s.DataCoding, s.DefaultMsgID, byte(len(s.ShortMessage)))
	dst = append(dst, s.ShortMessage...)
	dst = append(dst, s.TLVs...)
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start))
	return dst
}

// AppendTLV appends one optional parameter.
func AppendTLV(dst []byte, tag uint16, value []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, tag)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(value)))
	return append(dst, value...)
}

// Rebase points s's slices, parsed from from, at the same offsets in to: a copy of from (to must
// be at least as long). It saves parsing a copied PDU again.
func (s *Submit) Rebase(from, to []byte) {
	for _, f := range [...]*[]byte{&s.ServiceType, &s.SrcAddr, &s.DstAddr, &s.ScheduleTime, &s.ValidityPeriod, &s.ShortMessage, &s.TLVs} {
		if *f != nil {
			off := cap(from) - cap(*f)
			*f = to[off : off+len(*f) : off+len(*f)]
		}
	}
}

// AddrNumber reads an address of digits only (optionally a leading +) as a number, the way
// E.164 numbers are held: at most 15 digits. It returns 0 for anything else (alphanumeric
// senders, short codes with letters, empty).
func AddrNumber(a []byte) uint64 {
	if len(a) > 0 && a[0] == '+' {
		a = a[1:]
	}
	if len(a) == 0 || len(a) > 15 {
		return 0
	}
	var n uint64
	for _, c := range a {
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + uint64(c-'0')
	}
	return n
}
