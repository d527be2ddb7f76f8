package smpp

import (
	"bytes"
	"errors"
	"testing"
)

// fuzzIDAlphabet is what FuzzParseReceipt draws new ids from: validReceiptID accepts all of it.
const fuzzIDAlphabet = "0123456789abcdefABCDEFxyzXYZ-./+#=!?"

// FuzzParseReceipt reads arbitrary deliver_sm bodies as receipts: nothing panics; every id
// candidate is canonical and bounded; when ParseReceipt finds an id, AppendRewrittenReceipt
// (with the fuzzed id mapped onto valid characters) yields a body that parses, carries the new id
// in the TLV and the text, and is otherwise unchanged; a raw fuzzed id that is not valid is
// refused without touching dst. Seeds: testdata/fuzz/FuzzParseReceipt.
func FuzzParseReceipt(f *testing.F) {
	f.Fuzz(func(t *testing.T, body, rawID []byte) {
		var s Submit
		if ParseSubmit(body, &s) != nil {
			return
		}
		IsReceipt(&s)
		r, err := ParseReceipt(&s)
		for mode := IDAuto; mode <= IDReceiptHex+1; mode++ {
			var c IDCands
			IDCandidates(&c, r.ID, mode)
			for i := 0; i < c.Len(); i++ {
				id := c.At(i)
				if len(id) == 0 || len(id) > MaxIDLen || !bytes.Equal(CanonicalID(nil, id), id) {
					t.Fatalf("candidate %d %q of %q (%v) is not canonical", i, id, r.ID, mode)
				}
			}
		}
		if err != nil {
			if !errors.Is(err, ErrNoReceiptID) || r.ID != nil {
				t.Fatalf("ParseReceipt: %v with ID %q", err, r.ID)
			}
			return
		}
		if len(r.ID) == 0 {
			t.Fatal("ParseReceipt succeeded with an empty id")
		}

		prefix := []byte{0xAA}
		if !validReceiptID(rawID) {
			out, err := AppendRewrittenReceipt(prefix, &s, rawID)
			if !errors.Is(err, ErrInvalidReceiptID) || len(out) != len(prefix) {
				t.Fatalf("invalid id %q: %v, %d octets", rawID, err, len(out))
			}
		}
		newID := make([]byte, 0, MaxIDLen)
		for _, c := range rawID[:min(len(rawID), MaxIDLen)] {
			newID = append(newID, fuzzIDAlphabet[int(c)%len(fuzzIDAlphabet)])
		}
		if len(newID) == 0 {
			newID = append(newID, '1')
		}
		out, err := AppendRewrittenReceipt(prefix, &s, newID)
		if errors.Is(err, ErrReceiptTooLong) {
			if len(out) != len(prefix) {
				t.Fatalf("ErrReceiptTooLong after writing %d octets", len(out)-len(prefix))
			}
			return
		}
		if err != nil {
			t.Fatalf("AppendRewrittenReceipt(%q): %v", newID, err)
		}
		if out[0] != 0xAA {
			t.Fatal("dst prefix overwritten")
		}
		checkRewrite(t, &s, out[len(prefix):], newID)
	})
}
