package number

import (
	"bufio"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// generatedRanges is libphonenumber's carrier data as prefix,operator lines (see doc.go).
//
//go:embed ranges_gen.csv
var generatedRanges string

// FileError is a line of a range or port file that could not be used.
type FileError struct {
	File string
	Line int
	Err  error
}

func (e *FileError) Error() string { return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err) }
func (e *FileError) Unwrap() error { return e.Err }

// Table answers which operator an E.164 number belongs to: a ported number's own entry first,
// else the longest matching prefix. Immutable once built; safe for concurrent use; lookups
// allocate nothing.
type Table struct {
	prefixes    lpm               // values index names
	ported      map[uint64]uint16 // exact numbers; values index names
	names       []string          // names[0] == "": unknown
	prefixCount int
	gen         uint64 // build order: a reload's table has a higher one
}

// Operator returns the operator of n (E.164, country code first), "" if unknown.
func (t *Table) Operator(n uint64) string { return t.names[t.lookup(n)] }

// lookup returns the index in t.names of n's operator, 0 if unknown.
func (t *Table) lookup(n uint64) uint16 {
	if len(t.ported) > 0 {
		if v, ok := t.ported[n]; ok {
			return v
		}
	}
	if n == 0 || n >= pow10[MaxDigits] {
		return 0
	}
	return t.prefixes.lookup(n, digits(n))
}

// Len returns how many prefixes and ported numbers t holds.
func (t *Table) Len() (prefixes, ported int) { return t.prefixCount, len(t.ported) }

// Operators returns the operator names t knows, the unknown one ("") excluded.
func (t *Table) Operators() []string { return slices.Clone(t.names[1:]) }

// tableBuilder collects entries in increasing precedence.
type tableBuilder struct {
	names   []string
	ids     map[string]uint16
	entries []entry
	ported  map[uint64]uint16
}

func newTableBuilder() *tableBuilder {
	return &tableBuilder{names: []string{""}, ids: map[string]uint16{}, ported: map[uint64]uint16{}}
}

func (b *tableBuilder) id(name string) (uint16, error) {
	if id, ok := b.ids[name]; ok {
		return id, nil
	}
	if len(b.names) > 0xFFFF {
		return 0, errors.New("more than 65535 operator names")
	}
	id := uint16(len(b.names))
	b.names = append(b.names, name)
	b.ids[name] = id
	return id, nil
}

// line is one parsed data line.
type line struct {
	num  uint64
	d    int
	name string
}

// parseLine parses "digits,operator" (the operator is the rest of the line, commas included);
// ok is false for blank and comment lines.
func parseLine(s string) (l line, ok bool, err error) {
	s = strings.TrimSpace(s)
	if s == "" || s[0] == '#' {
		return line{}, false, nil
	}
	num, name, found := strings.Cut(s, ",")
	if !found {
		return line{}, false, errors.New(`want "digits,operator"`)
	}
	num, name = strings.TrimSpace(num), strings.TrimSpace(name)
	num = strings.TrimPrefix(num, "+")
	switch {
	case num == "":
		return line{}, false, errors.New("no digits before the comma")
	case name == "":
		return line{}, false, fmt.Errorf("%s: no operator after the comma", num)
	case len(num) > MaxDigits:
		return line{}, false, fmt.Errorf("%s: more than %d digits", num, MaxDigits)
	case num[0] == '0':
		return line{}, false, fmt.Errorf("%s: starts with 0; write numbers in E.164, country code first, without 00 or +", num)
	}
	var n uint64
	for i := 0; i < len(num); i++ {
		c := num[i]
		if c < '0' || c > '9' {
			return line{}, false, fmt.Errorf("%q: not a number; write digits, country code first", num)
		}
		n = n*10 + uint64(c-'0')
	}
	return line{n, len(num), name}, true, nil
}

// read parses r (named file) line by line into b: prefixes, or exact numbers if ported. Within
// one file a prefix or number may repeat only with the same operator.
func (b *tableBuilder) read(r io.Reader, file string, ported bool) error {
	sc := bufio.NewScanner(r)
	type first struct {
		line int
		id   uint16
	}
	seen := map[uint64]first{} // number, or padded prefix and digits
	for no := 1; sc.Scan(); no++ {
		l, ok, err := parseLine(sc.Text())
		if err != nil {
			return &FileError{file, no, err}
		}
		if !ok {
			continue
		}
		id, err := b.id(l.name)
		if err != nil {
			return &FileError{file, no, err}
		}
		key := l.num
		if !ported {
			key = padded(l.num, l.d)*16 + uint64(l.d) // < 2^54: padded < 10^15
		}
		if f, dup := seen[key]; dup && f.id != id {
			return &FileError{file, no, fmt.Errorf("%d: operator %q differs from line %d's %q", l.num, l.name, f.line, b.names[f.id])}
		} else if !dup {
			seen[key] = first{no, id}
		}
		if ported {
			b.ported[l.num] = id
		} else {
			b.entries = append(b.entries, entry{prefix: l.num, digits: uint8(l.d), val: id})
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	return nil
}

func (b *tableBuilder) readFile(path string, ported bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err // *PathError names the file
	}
	defer f.Close()
	return b.read(f, path, ported)
}

func (b *tableBuilder) table() *Table {
	t := &Table{prefixes: buildLPM(b.entries), names: b.names, prefixCount: len(b.entries), gen: tableGen.Add(1)}
	if len(b.ported) > 0 {
		t.ported = b.ported
	}
	return t
}

var tableGen atomic.Uint64

// generated is the generated data parsed once: each Build starts from a copy.
var generated = sync.OnceValues(func() (*tableBuilder, error) {
	b := newTableBuilder()
	if err := b.read(strings.NewReader(generatedRanges), "ranges_gen.csv", false); err != nil {
		return nil, err
	}
	return b, nil
})

// Build returns the Table of the generated carrier prefixes extended by rangeFiles
// ("prefix,operator" lines) and portFiles ("msisdn,operator" lines, exact numbers), later
// files overriding earlier ones for the same prefix or number. Lines starting with # are
// comments. Errors name the file and line.
func Build(rangeFiles, portFiles []string) (*Table, error) {
	g, err := generated()
	if err != nil {
		return nil, err
	}
	b := &tableBuilder{names: append([]string(nil), g.names...), ids: make(map[string]uint16, len(g.ids)),
		entries: append([]entry(nil), g.entries...), ported: map[uint64]uint16{}}
	for k, v := range g.ids {
		b.ids[k] = v
	}
	for _, f := range rangeFiles {
		if err := b.readFile(f, false); err != nil {
			return nil, err
		}
	}
	for _, f := range portFiles {
		if err := b.readFile(f, true); err != nil {
			return nil, err
		}
	}
	return b.table(), nil
}

// Reloader holds the current Table, rebuilt from the same files by Reload without a restart.
// Table is a lock-free atomic load; Reload calls are serialised.
type Reloader struct {
	rangeFiles, portFiles []string
	log                   *slog.Logger
	cur                   atomic.Pointer[Table]
	mu                    sync.Mutex // serialises Reload
}

// NewReloader builds the first Table from the generated data, rangeFiles and portFiles.
func NewReloader(rangeFiles, portFiles []string, log *slog.Logger) (*Reloader, error) {
	if log == nil {
		log = slog.Default()
	}
	r := &Reloader{rangeFiles: rangeFiles, portFiles: portFiles, log: log.With("component", "number")}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Table returns the current table.
func (r *Reloader) Table() *Table { return r.cur.Load() }

// Reload rebuilds the table from the files and swaps it in. On error (naming file and line)
// the current table stays.
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, err := Build(r.rangeFiles, r.portFiles)
	if err != nil {
		return fmt.Errorf("operator table not reloaded, the previous one stays: %w", err)
	}
	r.cur.Store(t)
	p, n := t.Len()
	r.log.Info("operator table loaded", "prefixes", p, "ported", n, "operators", len(t.names)-1,
		"range_files", len(r.rangeFiles), "port_files", len(r.portFiles))
	return nil
}
