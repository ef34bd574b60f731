package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Sentinel errors returned (wrapped) by Parse; ingest maps each to a 400.
var (
	// ErrMalformedJSON means the body is not valid JSON.
	ErrMalformedJSON = errors.New("body is not valid JSON")
	// ErrNotObject means the body is valid JSON but not an object.
	ErrNotObject = errors.New("body is not a JSON object")
	// ErrNoAction means the object has no action, an empty one, or one that is not a string.
	ErrNoAction = errors.New(`"action" is missing, empty or not a string`)
)

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
