package schema

import "errors"

// maxDepth is encoding/json's nesting limit, kept so the scanner accepts exactly what
// json.Valid accepts.
const maxDepth = 10000

// scanner validates JSON in one pass, with the grammar and limits of json.Valid, while
// reporting the members of the top-level object. It never allocates. When it fails, s.i is
// where the input stopped fitting the grammar, len(s.b) when the input ended first.
type scanner struct {
	b     []byte
	i     int
	depth int
}

// scanObject validates body and calls fn for each top-level member of the object it holds,
// with the raw key (between its quotes, escapes left in) and the raw value. It returns
// ErrMalformedJSON for invalid JSON and ErrNotObject for valid JSON that is not an object.
// fn is called before the rest of body is validated: callers must keep nothing they learned
// when an error follows.
func scanObject(body []byte, fn func(key, raw []byte, escapedKey bool)) error {
	s := scanner{b: body}
	s.space()
	if s.i < len(s.b) && s.b[s.i] != '{' {
		if !s.value() || !s.end() {
			return ErrMalformedJSON
		}
		return ErrNotObject
	}
	if s.i >= len(s.b) {
		return ErrMalformedJSON
	}
	s.i++ // {
	s.depth = 1
	s.space()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		if !s.end() {
			return ErrMalformedJSON
		}
		return nil
	}
	for {
		ks := s.i
		escaped, ok := s.str()
		if !ok {
			return ErrMalformedJSON
		}
		key := s.b[ks+1 : s.i-1]
		s.space()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return ErrMalformedJSON
		}
		s.i++
		s.space()
		vs := s.i
		if !s.value() {
			return ErrMalformedJSON
		}
		fn(key, s.b[vs:s.i], escaped)
		s.space()
		if s.i >= len(s.b) {
			return ErrMalformedJSON
		}
		switch s.b[s.i] {
		case ',':
			s.i++
			s.space()
		case '}':
			s.i++
			if !s.end() {
				return ErrMalformedJSON
			}
			return nil
		default:
			return ErrMalformedJSON
		}
	}
}

// ErrTruncatedJSON means the input ends inside the JSON value it starts with: more input may
// complete it.
var ErrTruncatedJSON = errors.New("JSON value ends early")

// ValueLen returns the length of the JSON value at the very start of b (no leading
// whitespace), validated with the grammar and limits of json.Valid, so that a stream can be
// cut into values. It returns ErrTruncatedJSON when b ends before the value does, or may: a
// number that reaches the end of b may go on; and ErrMalformedJSON when no continuation of b
// makes it valid.
func ValueLen(b []byte) (int, error) {
	s := scanner{b: b}
	if !s.value() {
		if s.i >= len(s.b) {
			return 0, ErrTruncatedJSON
		}
		return 0, ErrMalformedJSON
	}
	if s.i == len(s.b) && (b[0] == '-' || b[0] >= '0' && b[0] <= '9') {
		return 0, ErrTruncatedJSON
	}
	return s.i, nil
}

// end reports whether only whitespace follows.
func (s *scanner) end() bool {
	s.space()
	return s.i == len(s.b)
}

func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// value consumes one JSON value starting at s.i (no leading whitespace).
func (s *scanner) value() bool {
	if s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		_, ok := s.str()
		return ok
	case c == '{':
		return s.object()
	case c == '[':
		return s.array()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		return s.number()
	}
	return false
}

func (s *scanner) object() bool {
	if s.depth++; s.depth > maxDepth {
		return false
	}
	s.i++ // {
	s.space()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		s.depth--
		return true
	}
	for {
		if _, ok := s.str(); !ok {
			return false
		}
		s.space()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return false
		}
		s.i++
		s.space()
		if !s.value() {
			return false
		}
		s.space()
		if s.i >= len(s.b) {
			return false
		}
		switch s.b[s.i] {
		case ',':
			s.i++
			s.space()
		case '}':
			s.i++
			s.depth--
			return true
		default:
			return false
		}
	}
}

func (s *scanner) array() bool {
	if s.depth++; s.depth > maxDepth {
		return false
	}
	s.i++ // [
	s.space()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		s.depth--
		return true
	}
	for {
		if !s.value() {
			return false
		}
		s.space()
		if s.i >= len(s.b) {
			return false
		}
		switch s.b[s.i] {
		case ',':
			s.i++
			s.space()
		case ']':
			s.i++
			s.depth--
			return true
		default:
			return false
		}
	}
}

// str consumes a string starting at s.i and reports whether it held escapes.
func (s *scanner) str() (escaped, ok bool) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return false, false
	}
	for s.i++; s.i < len(s.b); s.i++ {
		switch c := s.b[s.i]; {
		case c == '"':
			s.i++
			return escaped, true
		case c < 0x20:
			return false, false
		case c == '\\':
			escaped = true
			s.i++
			if s.i >= len(s.b) {
				return false, false
			}
			switch s.b[s.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				for range 4 {
					if s.i++; s.i >= len(s.b) {
						return false, false
					}
					if h := s.b[s.i]; !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return false, false
					}
				}
			default:
				return false, false
			}
		}
	}
	return false, false
}

// literal consumes lit; on a mismatch s.i stops at the first byte that differs, so that a
// failure at the end of the input means the input ended early.
func (s *scanner) literal(lit string) bool {
	for k := range len(lit) {
		if s.i >= len(s.b) || s.b[s.i] != lit[k] {
			return false
		}
		s.i++
	}
	return true
}

// number consumes -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() bool {
	if s.b[s.i] == '-' {
		s.i++
	}
	switch {
	case s.i >= len(s.b):
		return false
	case s.b[s.i] == '0':
		s.i++
	case s.b[s.i] >= '1' && s.b[s.i] <= '9':
		s.digits()
	default:
		return false
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if !s.digits() {
			return false
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if !s.digits() {
			return false
		}
	}
	return true
}

// digits consumes one or more digits.
func (s *scanner) digits() bool {
	start := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i > start
}
