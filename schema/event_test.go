package schema

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "fixtures", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
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
		})
	}
}

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
