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
// envelope. It reads the body once, validating it as json.Valid would while picking out the
// top-level fields, and never re-encodes it.
func Parse(body []byte) (Envelope, error) {
	raw, err := rawEnvelope(body)
	if err != nil {
		return Envelope{}, err
	}
	env := Envelope{
		Action: stringValue(raw[0]), SubAction: stringValue(raw[1]), Type: stringValue(raw[2]),
		HookID: stringValue(raw[3]), RefID: stringValue(raw[4]), Platform: stringValue(raw[5]),
		Created: stringValue(raw[6]),
	}
	if raw[0] == nil || env.Action == "" {
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

// Identify returns the id NewEvent gives body and its created, in one scan of the object when
// it has a hookId: a reader that only needs to know whether it has the event already is spared
// the conversion. It validates body as JSON (ErrMalformedJSON, ErrNotObject) but checks nothing
// else NewEvent checks, such as the action: an event with an id may still be refused. As in
// encoding/json a later duplicate key wins, and without a non-empty string hookId the id is the
// derived one.
func Identify(body []byte) (id, created string, err error) {
	raw, err := rawEnvelope(body)
	if err != nil {
		return "", "", err
	}
	id, created = stringValue(raw[3]), stringValue(raw[6])
	if id == "" {
		if id, err = derivedID(body); err != nil {
			return "", "", err
		}
	}
	return id, created, nil
}

// rawEnvelope validates body as one JSON object and returns the raw values of its envelope
// members in Envelope's field order, nil for those it lacks.
func rawEnvelope(body []byte) ([7][]byte, error) {
	var raw [7][]byte
	err := scanObject(body, func(key, val []byte, escapedKey bool) {
		k := key
		if escapedKey {
			k = []byte(unquote(append(append([]byte{'"'}, key...), '"')))
		}
		if i := envelopeField(k); i >= 0 {
			raw[i] = val
		}
	})
	if err != nil {
		return [7][]byte{}, err
	}
	return raw, nil
}

// envelopeField returns the index in Parse's raw array of a top-level key, or -1.
func envelopeField(key []byte) int {
	switch string(key) {
	case "action":
		return 0
	case "subAction":
		return 1
	case "type":
		return 2
	case "hookId":
		return 3
	case "refId":
		return 4
	case "platform":
		return 5
	case "created":
		return 6
	}
	return -1
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
	return unquote(raw)
}

// unquote decodes a valid JSON string literal the way encoding/json does (invalid surrogates
// become U+FFFD).
func unquote(raw []byte) string {
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

// members returns the top-level members of a valid JSON object, in document order.
func members(body []byte) ([]member, error) {
	ms := make([]member, 0, 32)
	err := scanObject(body, func(key, raw []byte, escapedKey bool) {
		if escapedKey {
			key = []byte(unquote(append(append([]byte{'"'}, key...), '"')))
		}
		ms = append(ms, member{key: key, raw: raw})
	})
	if err != nil {
		return nil, fmt.Errorf("members: %w", err)
	}
	return ms, nil
}

type member struct {
	key []byte // unescaped
	raw []byte
}
