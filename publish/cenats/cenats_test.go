package cenats

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ayrbridge/ayrbridge/schema"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// fixtures is schema's set of Ayrshare webhook examples: the encoding is tested on the same
// payloads the domain is.
const fixtures = "../../schema/testdata/fixtures"

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtures, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// goldenEvent is what the golden files record of a message: everything but the data, which
// must be the fixture itself.
type goldenEvent struct {
	Subject string            `json:"subject"`
	Headers map[string]string `json:"headers"`
	Payload string            `json:"payload_type"`
}

func TestMsgGolden(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join(fixtures, "*.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	received := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, path := range paths {
		name := strings.TrimSuffix(filepath.Base(path), ".json")
		t.Run(name, func(t *testing.T) {
			body := readFixture(t, filepath.Base(path))
			ev, err := schema.NewEvent(body, schema.Meta{ReceivedAt: received, DeliveryID: "d-1", DeliveryAttempt: "2"})
			if err != nil {
				t.Fatalf("NewEvent: %v", err)
			}
			msg := Msg(ev)
			if msg.Subject != ev.Subject || !bytes.Equal(msg.Data, body) {
				t.Fatalf("Msg() = %s %q, want %s and the body", msg.Subject, msg.Data, ev.Subject)
			}
			p, err := schema.Payload(body)
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
		t.Fatalf("%v (run go test ./publish/cenats -update to create it)", err)
	}
	if !bytes.Equal(b, want) {
		t.Errorf("%s differs from the golden file:\ngot:\n%s\nwant:\n%s", path, b, want)
	}
}

func TestHeaderExtensions(t *testing.T) {
	ev, err := schema.NewEvent([]byte(`{"action":"social","type":"link","hookId":"h1","refId":"r1","platform":"x"}`), schema.Meta{
		DeliveryID: "d1", DeliveryAttempt: "3", Replayed: true,
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", TraceState: "k=v",
	})
	if err != nil {
		t.Fatal(err)
	}
	h := Header(ev)
	want := map[string]string{
		"Nats-Msg-Id": "h1", HeaderID: "h1", HeaderSpecVersion: "1.0", HeaderSource: "/ayrshare/profiles/r1",
		HeaderType: "com.ayrshare.social.link", HeaderContentType: "application/json",
		HeaderRefID: "r1", HeaderPlatform: "x", HeaderDeliveryID: "d1", HeaderDeliveryAttempt: "3",
		HeaderReplayed: "true", HeaderTraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		HeaderTraceState: "k=v", HeaderDataSchema: schema.DataSchemaBase + "social.json",
	}
	for k, v := range want {
		if got := h[k]; len(got) != 1 || got[0] != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	if len(h) != len(want)+1 || h.Get(HeaderTime) == "" { // ce-time is the receipt time here
		t.Errorf("headers %v, want exactly %v and ce-time", h, want)
	}
	bare, _ := schema.NewEvent([]byte(`{"action":"brandNew"}`), schema.Meta{})
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range Header(bare) {
			if !yield(k) {
				return
			}
		}
	})
	wantKeys := []string{HeaderContentType, HeaderID, HeaderSource, HeaderSpecVersion, HeaderTime, HeaderType, nats.MsgIdHdr}
	slices.Sort(wantKeys)
	if !slices.Equal(keys, wantKeys) {
		t.Errorf("bare event headers = %v, want the 6 required CloudEvents headers and Nats-Msg-Id %v", keys, wantKeys)
	}
}

func TestDecodeMsgRoundTrip(t *testing.T) {
	body := readFixture(t, "messages_message_created.json")
	ev, err := schema.NewEvent(body, schema.Meta{DeliveryID: "d9", Replayed: true, TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
	if err != nil {
		t.Fatal(err)
	}
	ce, err := DecodeMsg(t.Context(), Msg(ev))
	if err != nil {
		t.Fatal(err)
	}
	if err := ce.Validate(); err != nil {
		t.Fatalf("decoded event is not valid: %v", err)
	}
	want := ev.CloudEvent()
	if ce.ID() != want.ID() || ce.Type() != want.Type() || ce.Source() != want.Source() ||
		!ce.Time().Equal(want.Time()) || ce.DataContentType() != schema.ContentType || ce.DataSchema() != want.DataSchema() {
		t.Errorf("decoded %v\nwant %v", ce, want)
	}
	if !bytes.Equal(ce.Data(), body) {
		t.Error("decoded data differs from the body")
	}
	// What the consumer decodes carries exactly the extensions the domain event has.
	if got, want := ce.Extensions(), want.Extensions(); len(got) != len(want) {
		t.Errorf("extensions %v, want %v", got, want)
	}
	for name, v := range map[string]string{"deliveryid": "d9", "refid": ev.Env.RefID, "replayed": "true", "traceparent": ev.Meta.TraceParent} {
		if got, _ := ce.Extensions()[name].(string); got != v {
			t.Errorf("extension %s = %v, want %q", name, ce.Extensions()[name], v)
		}
	}
}

func TestDecodeMsgRefusesStructured(t *testing.T) {
	msg := &nats.Msg{Subject: "ayrshare.x.y", Data: []byte(`{"specversion":"1.0"}`)}
	if _, err := DecodeMsg(t.Context(), msg); err == nil {
		t.Fatal("a message without ce- headers decoded")
	}
}

func BenchmarkMsg(b *testing.B) {
	ev, err := schema.NewEvent(readFixture(b, "social_link.json"), schema.Meta{DeliveryID: "d1", DeliveryAttempt: "1"})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = Msg(ev)
	}
}
