package schema

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// SubjectPrefix is the first token of every subject the bridge publishes on.
const SubjectPrefix = "ayrshare"

// StreamSubjects is the subject filter a stream needs to hold every event.
const StreamSubjects = SubjectPrefix + ".>"

// TypePrefix starts every CloudEvent type.
const TypePrefix = "com.ayrshare."

// ContentType is the datacontenttype of every event: the data is the webhook's JSON.
const ContentType = "application/json"

// NoQualifier is the last subject token of a webhook with neither subAction nor type.
const NoQualifier = "none"

// Names of the CloudEvents extension attributes an event may carry besides the required
// attributes; the transport binding decides how each is written (publish/cenats prefixes ce-).
const (
	ExtRefID           = "refid"
	ExtPlatform        = "platform"
	ExtDeliveryID      = "deliveryid"
	ExtDeliveryAttempt = "deliveryattempt"
	ExtReplayed        = "replayed"
	ExtTraceParent     = "traceparent"
	ExtTraceState      = "tracestate"
)

// Extension is one CloudEvents extension attribute; an empty Value means the event lacks it.
type Extension struct {
	Name, Value string
}

// volatile reports the members that change between deliveries of one event, which the
// derived id leaves out.
func volatile(key string) bool {
	return key == "retryAttempt" || key == "timeStamp"
}

// Meta is what the receiver knows about a webhook besides its body.
type Meta struct {
	ReceivedAt      time.Time // ce-time when the payload has no usable created
	DeliveryID      string    // X-Ayrshare-Delivery-Id
	DeliveryAttempt string    // X-Ayrshare-Delivery-Attempt
	TraceParent     string    // W3C traceparent of the delivery, if any
	TraceState      string    // W3C tracestate of the delivery, if any
	Replayed        bool      // the event came from /hook/history, not a delivery
}

// Event is one webhook as a CloudEvent bound for JetStream.
type Event struct {
	ID      string
	Subject string
	Type    string
	Source  string
	Time    time.Time
	Meta    Meta
	Env     Envelope
	Data    []byte // the webhook body as received
}

// NewEvent validates body and builds its event. Data aliases body: callers must not reuse it.
func NewEvent(body []byte, meta Meta) (Event, error) {
	env, err := Parse(body)
	if err != nil {
		return Event{}, err
	}
	id := env.HookID
	if id == "" {
		if id, err = derivedID(body); err != nil {
			return Event{}, err
		}
	}
	action, qualifier := Token(env.Action), Token(Qualifier(env))
	var t time.Time
	if env.Created != "" { // not parsed when absent: time.Parse allocates its error
		t, _ = time.Parse(time.RFC3339Nano, env.Created) // unparseable: the zero time
	}
	if t.IsZero() {
		t = meta.ReceivedAt
		if t.IsZero() {
			t = time.Now()
		}
	}
	return Event{
		ID:      id,
		Subject: SubjectPrefix + "." + action + "." + qualifier,
		Type:    TypePrefix + action + "." + qualifier,
		Source:  Source(env.RefID),
		Time:    t.UTC(),
		Meta:    meta,
		Env:     env,
		Data:    body,
	}, nil
}

// Qualifier returns the raw last subject token: subAction, else type, else NoQualifier.
func Qualifier(env Envelope) string {
	switch {
	case env.SubAction != "":
		return env.SubAction
	case env.Type != "":
		return env.Type
	default:
		return NoQualifier
	}
}

// Source returns the ce-source naming the Ayrshare profile refID.
func Source(refID string) string {
	if refID == "" {
		return "/ayrshare"
	}
	return "/ayrshare/profiles/" + url.PathEscape(refID)
}

// Token makes s safe as one subject token: every character outside A-Z a-z 0-9 _ - becomes _.
func Token(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if !tokenByte(s[i]) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		c := s[i]
		if tokenByte(c) {
			b.WriteByte(c)
			i++
			continue
		}
		_, size := utf8.DecodeRuneInString(s[i:])
		b.WriteByte('_')
		i += size
	}
	return b.String()
}

func tokenByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// derivedID hashes the members of body that stay the same across redeliveries: sorted by key,
// each written as <quoted key>:<compacted value>\n, retryAttempt and timeStamp left out.
func derivedID(body []byte) (string, error) {
	ms, err := members(body)
	if err != nil {
		return "", err
	}
	ms = slices.DeleteFunc(ms, func(m member) bool { return volatile(string(m.key)) })
	slices.SortStableFunc(ms, func(a, b member) int { return bytes.Compare(a.key, b.key) })
	canonical := make([]byte, 0, len(body)+8*len(ms))
	for _, m := range ms {
		canonical = appendQuoted(canonical, m.key)
		canonical = append(canonical, ':')
		canonical = appendCompact(canonical, m.raw)
		canonical = append(canonical, '\n')
	}
	sum := sha256.Sum256(canonical)
	var id [len("sha256:") + 32]byte
	copy(id[:], "sha256:")
	hex.Encode(id[len("sha256:"):], sum[:16])
	return string(id[:]), nil
}

// appendQuoted appends key as encoding/json quotes a string.
func appendQuoted(dst, key []byte) []byte {
	for _, c := range key {
		// Past plain printable ASCII, let encoding/json decide (it escapes <, >, &, and more).
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(string(key))
			return append(dst, q...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, key...)
	return append(dst, '"')
}

// appendCompact appends the valid JSON value raw without whitespace outside strings, as
// json.Compact would.
func appendCompact(dst, raw []byte) []byte {
	inString, escaped := false, false
	for _, c := range raw {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			continue
		}
		dst = append(dst, c)
	}
	return dst
}

// Extensions returns the extension attributes of e in a fixed order, the absent ones with an
// empty Value. An array, so building a message's headers does not allocate for it.
func (e Event) Extensions() [7]Extension {
	replayed := ""
	if e.Meta.Replayed {
		replayed = "true"
	}
	return [...]Extension{
		{ExtRefID, e.Env.RefID},
		{ExtPlatform, e.Env.Platform},
		{ExtDeliveryID, e.Meta.DeliveryID},
		{ExtDeliveryAttempt, e.Meta.DeliveryAttempt},
		{ExtTraceParent, e.Meta.TraceParent},
		{ExtTraceState, e.Meta.TraceState},
		{ExtReplayed, replayed},
	}
}
