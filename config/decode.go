package config

import (
	"encoding"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Error is one problem in a configuration file.
type Error struct {
	File string // "" when the Config did not come from a file
	Line int    // 0 when unknown
	Path string // field path such as "upstreams[0].binds"; "" for the document
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError turns a yaml.v3 parse error into an *Error.
func syntaxError(file string, err error) error {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{File: file, Line: line, Msg: m[2]}
	}
	return &Error{File: file, Msg: strings.TrimPrefix(msg, "yaml: ")}
}

// loader collects the errors of one Load or Validate.
type loader struct {
	file  string
	lines map[string]int // field path -> line of its key in the file
	errs  []error
}

// addf records an error at path, located at the line of path or of its
// nearest present parent.
func (l *loader) addf(path, format string, args ...any) {
	line := 0
	for p := path; p != ""; {
		if n, ok := l.lines[p]; ok {
			line = n
			break
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	l.addAt(line, path, format, args...)
}

func (l *loader) addAt(line int, path, format string, args ...any) {
	l.errs = append(l.errs, &Error{File: l.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// check records an error at path unless ok.
func (l *loader) check(path string, ok bool, format string, args ...any) {
	if !ok {
		l.addf(path, format, args...)
	}
}

// defaulter is implemented by list elements whose omitted keys have
// non-zero defaults.
type defaulter interface{ setDefaults() }

// decode applies node n onto v, which already holds the defaults. Structs
// take mappings whose keys are checked against their yaml tags, slices take
// sequences and replace v, and everything else goes through yaml.v3. An
// explicit null sets a scalar or list to its zero value.
func (l *loader) decode(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	ptr := v.Addr().Interface()
	_, custom := ptr.(yaml.Unmarshaler)
	if _, ok := ptr.(encoding.TextUnmarshaler); ok {
		custom = true
	}
	switch {
	case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null":
		if custom || v.Kind() != reflect.Struct {
			v.SetZero()
		}
	case !custom && v.Kind() == reflect.Struct:
		l.mapping(n, v, path)
	case !custom && v.Kind() == reflect.Slice:
		l.sequence(n, v, path)
	case n.Kind != yaml.ScalarNode:
		l.addAt(n.Line, path, "expected a single value, got %s", describe(n))
	case !custom && v.CanInt() && n.ShortTag() != "!!int":
		l.addAt(n.Line, path, "expected an integer, got %s", describe(n))
	case !custom && v.Kind() == reflect.Bool && n.ShortTag() != "!!bool":
		l.addAt(n.Line, path, "expected true or false, got %s", describe(n))
	default:
		if err := n.Decode(ptr); err != nil {
			l.addAt(n.Line, path, "%v", err)
		}
	}
}

func (l *loader) mapping(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		l.addAt(n.Line, path, "expected a mapping, got %s", describe(n))
		return
	}
	t := v.Type()
	var keys []string
	index := map[string]int{}
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		keys = append(keys, name)
		index[name] = i
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		p := k.Value
		if path != "" {
			p = path + "." + k.Value
		}
		f, known := index[k.Value]
		_, dup := l.lines[p]
		switch {
		case !known:
			l.addAt(k.Line, p, "unknown key, want one of %s", strings.Join(keys, ", "))
		case dup:
			l.addAt(k.Line, p, "duplicate key, first given on line %d", l.lines[p])
		default:
			l.lines[p] = k.Line
			l.decode(val, v.Field(f), p)
		}
	}
}

func (l *loader) sequence(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		l.addAt(n.Line, path, "expected a list, got %s", describe(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, e := range n.Content {
		p := fmt.Sprintf("%s[%d]", path, i)
		l.lines[p] = e.Line
		if d, ok := s.Index(i).Addr().Interface().(defaulter); ok {
			d.setDefaults()
		}
		l.decode(e, s.Index(i), p)
	}
	v.Set(s)
}

// describe names what a node holds, for error messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return strconv.Quote(n.Value)
}

// resolveSecrets enforces a single password source per account and
// upstream and reads password_env and password_file into Password.
func (l *loader) resolveSecrets(c *Config) {
	for i := range c.Accounts {
		a := &c.Accounts[i]
		l.resolve(fmt.Sprintf("accounts[%d]", i), &a.Password, a.PasswordBcrypt, a.PasswordEnv, a.PasswordFile)
	}
	for i := range c.Upstreams {
		u := &c.Upstreams[i]
		l.resolve(fmt.Sprintf("upstreams[%d]", i), &u.Password, u.PasswordBcrypt, u.PasswordEnv, u.PasswordFile)
	}
}

func (l *loader) resolve(path string, pw *Secret, hash, env, file string) {
	given := 0
	for _, s := range []string{string(*pw), hash, env, file} {
		if s != "" {
			given++
		}
	}
	switch {
	case given > 1:
		l.addf(path, "give only one of password, password_bcrypt, password_env and password_file")
	case env != "":
		*pw = Secret(os.Getenv(env))
		l.check(path+".password_env", *pw != "", "environment variable %s is unset or empty", env)
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			l.addf(path+".password_file", "%v", err)
			return
		}
		*pw = Secret(strings.TrimRight(string(b), "\r\n"))
		l.check(path+".password_file", *pw != "", "%s is empty", file)
	}
}
