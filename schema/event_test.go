package schema

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/golden")

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "fixtures", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// goldenEvent is what the golden files record of an event: everything but the data, which
// must be the fixture itself.
type goldenEvent struct {
	Subject string            `json:"subject"`
	Headers map[string]string `json:"headers"`
	Payload string            `json:"payload_type"`
}

func TestEventGolden(t *testing.T) {
	fixtures, err := filepath.Glob(filepath.Join("testdata", "fixtures", "*.json"))
	if err != nil || len(fixtures) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	received := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, path := range fixtures {
		name := strings.TrimSuffix(filepath.Base(path), ".json")
		t.Run(name, func(t *testing.T) {
			body := readFixture(t, filepath.Base(path))
			ev, err := NewEvent(body, Meta{ReceivedAt: received, DeliveryID: "d-1", DeliveryAttempt: "2"})
			if err != nil {
				t.Fatalf("NewEvent: %v", err)
			}
			if !bytes.Equal(ev.Data, body) {
				t.Fatal("event data is not the body byte for byte")
			}
			msg := ev.Msg()
			if msg.Subject != ev.Subject || !bytes.Equal(msg.Data, body) {
				t.Fatalf("Msg() = %s %q, want %s and the body", msg.Subject, msg.Data, ev.Subject)
			}
			p, err := Payload(body)
			if err != nil {
				t.Fatalf("Payload: %v", err)
			}
			got := goldenEvent{Subject: msg.Subject, Headers: map[string]string{}, Payload: fmt.Sprintf("%T", p)}
			for k, v := range msg.Header {
				got.Headers[k] = strings.Join(v, ",")
			}
			compareGolden(t, filepath.Join("testdata", "golden", name+".json"), got)
		})
	}
}

func compareGolden(t *testing.T, path string, got any) {
	t.Helper()
	b, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, '\n')
	if *update {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./schema -update to create it)", err)
	}
	if !bytes.Equal(b, want) {
		t.Errorf("%s differs from the golden file:\ngot:\n%s\nwant:\n%s", path, b, want)
	}
}

func TestSubjectAndType(t *testing.T) {
	tests := map[string]struct {
		body          string
		subject, typ  string
		wantQualifier string
	}{
		"subAction wins":         {`{"action":"scheduled","subAction":"tikTokPublished","type":"x"}`, "ayrshare.scheduled.tikTokPublished", "com.ayrshare.scheduled.tikTokPublished", "tikTokPublished"},
		"type when no subAction": {`{"action":"social","type":"link"}`, "ayrshare.social.link", "com.ayrshare.social.link", "link"},
		"empty subAction":        {`{"action":"social","subAction":"","type":"unlink"}`, "ayrshare.social.unlink", "com.ayrshare.social.unlink", "unlink"},
		"non-string subAction":   {`{"action":"social","subAction":7,"type":"refresh"}`, "ayrshare.social.refresh", "com.ayrshare.social.refresh", "refresh"},
		"neither":                {`{"action":"feed"}`, "ayrshare.feed.none", "com.ayrshare.feed.none", "none"},
		"unknown action routed":  {`{"action":"comments","subAction":"commentCreated"}`, "ayrshare.comments.commentCreated", "com.ayrshare.comments.commentCreated", "commentCreated"},
		"wildcards and dots":     {`{"action":"a.b*c>d","type":"x y"}`, "ayrshare.a_b_c_d.x_y", "com.ayrshare.a_b_c_d.x_y", "x_y"},
		"per character not byte": {`{"action":"café","type":"日本"}`, "ayrshare.caf_.__", "com.ayrshare.caf_.__", "__"},
		"escaped unicode":        {`{"action":"\u00e9t\u00e9","type":"ok-_9"}`, "ayrshare._t_.ok-_9", "com.ayrshare._t_.ok-_9", "ok-_9"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			ev, err := NewEvent([]byte(tt.body), Meta{})
			if err != nil {
				t.Fatal(err)
			}
			if ev.Subject != tt.subject {
				t.Errorf("subject = %q, want %q", ev.Subject, tt.subject)
			}
			if ev.Type != strings.Replace(tt.subject, "ayrshare.", "com.ayrshare.", 1) {
				t.Errorf("type = %q, want the subject's tokens under com.ayrshare.", ev.Type)
			}
			if q := Token(Qualifier(ev.Env)); q != tt.wantQualifier {
				t.Errorf("qualifier = %q, want %q", q, tt.wantQualifier)
			}
		})
	}
}

func TestToken(t *testing.T) {
	tests := map[string]string{
		"plain":         "plain",
		"A-Z_a-z_0-9":   "A-Z_a-z_0-9",
		"with space":    "with_space",
		"a.b":           "a_b",
		"*":             "_",
		">":             "_",
		"é":             "_",
		"€uro":          "_uro",
		"😀x":            "_x",
		"\xff\xfe":      "__", // each invalid byte is one character
		"":              "",
		"tab\there\nnl": "tab_here_nl",
	}
	for in, want := range tests {
		if got := Token(in); got != want {
			t.Errorf("Token(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseRefusals(t *testing.T) {
	long := strings.Repeat("x", MaxFieldBytes+1)
	tests := map[string]struct {
		body string
		want error
	}{
		"empty":               {``, ErrMalformedJSON},
		"truncated":           {`{"action":"feed"`, ErrMalformedJSON},
		"trailing garbage":    {`{"action":"feed"} x`, ErrMalformedJSON},
		"array":               {`[{"action":"feed"}]`, ErrNotObject},
		"string":              {`"feed"`, ErrNotObject},
		"null":                {`null`, ErrNotObject},
		"no action":           {`{"type":"link"}`, ErrNoAction},
		"empty action":        {`{"action":""}`, ErrNoAction},
		"number action":       {`{"action":5}`, ErrNoAction},
		"null action":         {`{"action":null}`, ErrNoAction},
		"object action":       {`{"action":{"a":1}}`, ErrNoAction},
		"later duplicate":     {`{"action":"feed","action":3}`, ErrNoAction},
		"nested action only":  {`{"x":{"action":"feed"}}`, ErrNoAction},
		"long hookId":         {`{"action":"feed","hookId":"` + long + `"}`, ErrBadField},
		"control in refId":    {`{"action":"feed","refId":"a\r\nNats-Msg-Id: x"}`, ErrBadField},
		"control in action":   {`{"action":"a\u0000b"}`, ErrBadField},
		"invalid utf8 hookId": {"{\"action\":\"feed\",\"hookId\":\"\xff\"}", ErrBadField},
		"long action":         {`{"action":"` + long + `"}`, ErrBadField},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(tt.body))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Parse(%.40q) error = %v, want %v", tt.body, err, tt.want)
			}
			if _, err := NewEvent([]byte(tt.body), Meta{}); !errors.Is(err, tt.want) {
				t.Fatalf("NewEvent error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestParseEnvelope(t *testing.T) {
	body := `  {"hookId":"h\"1","action":"messages","nested":{"action":"no","hookId":"no"},"subAction":"messageCreated",` +
		`"type":"received","refId":"r1","platform":"instagram","created":"2025-01-02T03:04:05Z","list":[1,"a",{"b":[]}]}  `
	env, err := Parse([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	want := Envelope{Action: "messages", SubAction: "messageCreated", Type: "received", HookID: `h"1`, RefID: "r1",
		Platform: "instagram", Created: "2025-01-02T03:04:05Z"}
	if env != want {
		t.Fatalf("Parse = %+v, want %+v", env, want)
	}
}

func TestEventID(t *testing.T) {
	base := `{"action":"feed","created":"2025-01-01T00:00:00Z","url":"https://x","title":"T","retryAttempt":0,"timeStamp":1}`
	derived := func(body string) string {
		t.Helper()
		ev, err := NewEvent([]byte(body), Meta{})
		if err != nil {
			t.Fatal(err)
		}
		return ev.ID
	}
	id := derived(base)
	if !strings.HasPrefix(id, "sha256:") || len(id) != len("sha256:")+32 {
		t.Fatalf("derived id %q: want sha256: and 32 hex digits", id)
	}
	same := map[string]string{
		"redelivery":          `{"action":"feed","created":"2025-01-01T00:00:00Z","url":"https://x","title":"T","retryAttempt":3,"timeStamp":99}`,
		"timeStamp as string": `{"action":"feed","created":"2025-01-01T00:00:00Z","url":"https://x","title":"T","timeStamp":"2025-01-01T00:00:09Z"}`,
		"no volatile fields":  `{"action":"feed","created":"2025-01-01T00:00:00Z","url":"https://x","title":"T"}`,
		"other key order":     `{"title":"T","url":"https://x","action":"feed","created":"2025-01-01T00:00:00Z"}`,
		"other whitespace":    "{ \"action\" : \"feed\",\n \"created\":\"2025-01-01T00:00:00Z\",\"url\":\"https://x\",\"title\":\"T\" }",
	}
	for name, body := range same {
		if got := derived(body); got != id {
			t.Errorf("%s: id %s, want %s", name, got, id)
		}
	}
	differ := map[string]string{
		"other title":   `{"action":"feed","created":"2025-01-01T00:00:00Z","url":"https://x","title":"U"}`,
		"other created": `{"action":"feed","created":"2025-01-01T00:00:01Z","url":"https://x","title":"T"}`,
		"extra field":   `{"action":"feed","created":"2025-01-01T00:00:00Z","url":"https://x","title":"T","code":200}`,
		"nested change": `{"action":"feed","created":"2025-01-01T00:00:00Z","url":"https://x","title":"T","data":{"a":1}}`,
	}
	for name, body := range differ {
		if got := derived(body); got == id {
			t.Errorf("%s: id %s equals the base event's", name, got)
		}
	}
	if got := derived(`{"action":"feed","hookId":"abc","title":"T"}`); got != "abc" {
		t.Errorf("id with hookId = %q, want abc", got)
	}
	if got := derived(`{"action":"feed","hookId":"","title":"T"}`); !strings.HasPrefix(got, "sha256:") {
		t.Errorf("id with empty hookId = %q, want a derived id", got)
	}
}

func TestEventTimeAndSource(t *testing.T) {
	recv := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	tests := map[string]struct {
		body   string
		time   time.Time
		source string
	}{
		"created":             {`{"action":"a","created":"2025-09-05T23:13:08Z","refId":"abc"}`, time.Date(2025, 9, 5, 23, 13, 8, 0, time.UTC), "/ayrshare/profiles/abc"},
		"created with offset": {`{"action":"a","created":"2025-09-05T23:13:08.5+02:00"}`, time.Date(2025, 9, 5, 21, 13, 8, 5e8, time.UTC), "/ayrshare"},
		"unparseable created": {`{"action":"a","created":"yesterday"}`, recv, "/ayrshare"},
		"no created":          {`{"action":"a","refId":"a/b c"}`, recv, "/ayrshare/profiles/a%2Fb%20c"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			ev, err := NewEvent([]byte(tt.body), Meta{ReceivedAt: recv})
			if err != nil {
				t.Fatal(err)
			}
			if !ev.Time.Equal(tt.time) || ev.Time.Location() != time.UTC {
				t.Errorf("time = %v, want %v in UTC", ev.Time, tt.time)
			}
			if ev.Source != tt.source {
				t.Errorf("source = %q, want %q", ev.Source, tt.source)
			}
			if got := ev.Header().Get(HeaderTime); got != tt.time.Format(time.RFC3339Nano) {
				t.Errorf("ce-time = %q", got)
			}
		})
	}
}

func TestHeaderExtensions(t *testing.T) {
	ev, err := NewEvent([]byte(`{"action":"social","type":"link","hookId":"h1","refId":"r1","platform":"x"}`), Meta{
		DeliveryID: "d1", DeliveryAttempt: "3", Replayed: true,
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", TraceState: "k=v",
	})
	if err != nil {
		t.Fatal(err)
	}
	h := ev.Header()
	want := map[string]string{
		"Nats-Msg-Id": "h1", HeaderID: "h1", HeaderSpecVersion: "1.0", HeaderSource: "/ayrshare/profiles/r1",
		HeaderType: "com.ayrshare.social.link", HeaderContentType: "application/json",
		HeaderRefID: "r1", HeaderPlatform: "x", HeaderDeliveryID: "d1", HeaderDeliveryAttempt: "3",
		HeaderReplayed: "true", HeaderTraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		HeaderTraceState: "k=v", HeaderDataSchema: DataSchemaBase + "social.json",
	}
	for k, v := range want {
		if got := h[k]; len(got) != 1 || got[0] != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	bare, _ := NewEvent([]byte(`{"action":"brandNew"}`), Meta{})
	for _, k := range []string{HeaderRefID, HeaderPlatform, HeaderDeliveryID, HeaderDeliveryAttempt, HeaderReplayed,
		HeaderTraceParent, HeaderTraceState, HeaderDataSchema} {
		if v, ok := bare.Header()[k]; ok {
			t.Errorf("event without %s carries it: %q", k, v)
		}
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range bare.Header() {
			if !yield(k) {
				return
			}
		}
	})
	if len(keys) != 7 {
		t.Errorf("bare event headers = %v, want the 6 required CloudEvents headers and Nats-Msg-Id", keys)
	}
}

// referenceID is the derived-id rule written plainly with encoding/json, to check the fast
// implementation against.
func referenceID(t *testing.T, body []byte) string {
	t.Helper()
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil {
		t.Fatal(err)
	}
	keys := slices.Sorted(maps.Keys(obj))
	var canonical bytes.Buffer
	for _, k := range keys {
		if volatile(k) {
			continue
		}
		q, _ := json.Marshal(k)
		canonical.Write(q)
		canonical.WriteByte(':')
		if err := json.Compact(&canonical, obj[k]); err != nil {
			t.Fatal(err)
		}
		canonical.WriteByte('\n')
	}
	sum := sha256.Sum256(canonical.Bytes())
	return "sha256:" + hex.EncodeToString(sum[:16])
}

func FuzzDerivedID(f *testing.F) {
	for _, s := range []string{`{"action":"feed","b":[1, 2],"a":"x y"}`, `{"<&>":"\u2028","action":"a"}`, `{"k\u00e9":{"n": null}}`, "{\"\xff\":1}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if !json.Valid(body) || !utf8.Valid(body) {
			return // encoding/json rewrites invalid UTF-8 when it decodes; ids only need to be stable
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(body, &obj) != nil {
			return
		}
		// Duplicate keys: encoding/json keeps the last, the id hashes every member.
		if n := 0; scanObject(body, func([]byte, []byte, bool) { n++ }) != nil || n != len(obj) {
			return
		}
		got, err := derivedID(body)
		if err != nil {
			t.Fatal(err)
		}
		if want := referenceID(t, body); got != want {
			t.Fatalf("derivedID(%q) = %s, reference %s", body, got, want)
		}
	})
}
