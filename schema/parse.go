package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Sentinel errors returned (wrapped) by Parse; ingest maps each to a 400.
var (
	// ErrMalformedJSON means the body is not valid JSON.
	ErrMalformedJSON = errors.New("body is not valid JSON")
	// ErrNotObject means the body is valid JSON but not an object.
	ErrNotObject = errors.New("body is not a JSON object")
	// ErrNoAction means the object has no action, an empty one, or one that is not a string.
	ErrNoAction = errors.New(`"action" is missing, empty or not a string`)
	// ErrBadField means a field that becomes a subject token or a message header is longer
	// than MaxFieldBytes or holds control characters or invalid UTF-8.
	ErrBadField = errors.New("field is too long or holds control characters")
)

// MaxFieldBytes bounds each field that ends up in the subject or a header (action, subAction,
// type, hookId, refId, platform): NATS limits a message's control line and headers, and a
// refusal is better than a publish the server rejects on every retry.
const MaxFieldBytes = 256

// Envelope is the routing view of a webhook: the top-level fields every action shares.
// Fields that are absent or not strings are empty.
type Envelope struct {
	Action    string
	SubAction string
	Type      string
	HookID    string
	RefID     string
	Platform  string
	Created   string
}

// Parse validates body as one JSON object with a non-empty string action and returns its
// envelope. It reads only the top level and never re-encodes the body.
func Parse(body []byte) (Envelope, error) {
	var env Envelope
	if !json.Valid(body) {
		return env, ErrMalformedJSON
	}
	sawAction := false
	err := walkObject(body, func(key, raw []byte) {
		var dst *string
		switch string(key) {
		case "action":
			dst, sawAction = &env.Action, true
			env.Action = ""
		case "subAction":
			dst = &env.SubAction
		case "type":
			dst = &env.Type
		case "hookId":
			dst = &env.HookID
		case "refId":
			dst = &env.RefID
		case "platform":
			dst = &env.Platform
		case "created":
			dst = &env.Created
		default:
			return
		}
		*dst = stringValue(raw)
	})
	if err != nil {
		return Envelope{}, err
	}
	if !sawAction || env.Action == "" {
		return Envelope{}, ErrNoAction
	}
	for _, f := range [...]struct{ name, v string }{
		{"action", env.Action}, {"subAction", env.SubAction}, {"type", env.Type},
		{"hookId", env.HookID}, {"refId", env.RefID}, {"platform", env.Platform},
	} {
		if !headerSafe(f.v) {
			return Envelope{}, fmt.Errorf("%w: %s", ErrBadField, f.name)
		}
	}
	return env, nil
}

// walkObject calls fn for each top-level member of body, which must already be valid JSON,
// with the key unescaped and the value's raw bytes. Later duplicates win, as in encoding/json.
func walkObject(body []byte, fn func(key, raw []byte)) error {
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return ErrNotObject
	}
	i = skipSpace(body, i+1)
	if body[i] == '}' {
		return nil
	}
	for {
		end := skipString(body, i)
		key := body[i+1 : end-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			key = []byte(stringValue(body[i:end]))
		}
		i = skipSpace(body, end)
		i = skipSpace(body, i+1) // the colon
		vend := skipValue(body, i)
		fn(key, body[i:vend])
		i = skipSpace(body, vend)
		if body[i] == '}' {
			return nil
		}
		i = skipSpace(body, i+1) // the comma
	}
}

// stringValue returns the string a raw JSON value holds, or "" when it is not a string.
func stringValue(raw []byte) string {
	if len(raw) < 2 || raw[0] != '"' {
		return ""
	}
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return ""
	}
	return s
}

// headerSafe reports whether s may travel in a NATS header or subject: short, valid UTF-8 and
// free of control characters (which could break the protocol line).
func headerSafe(s string) bool {
	if len(s) > MaxFieldBytes {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return utf8.ValidString(s)
}

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipString returns the index just past the string starting at b[i] == '"'.
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// skipValue returns the index just past the valid JSON value starting at b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = skipString(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return len(b)
	default:
		for ; i < len(b); i++ {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
		}
		return len(b)
	}
}

// members returns the top-level members of a valid JSON object, in document order.
func members(body []byte) ([]member, error) {
	var ms []member
	err := walkObject(body, func(key, raw []byte) {
		ms = append(ms, member{key: string(key), raw: raw})
	})
	if err != nil {
		return nil, fmt.Errorf("members: %w", err)
	}
	return ms, nil
}

type member struct {
	key string
	raw []byte
}
