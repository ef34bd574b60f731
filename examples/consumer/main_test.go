package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ayrbridge/ayrbridge/internal/logtest"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ayrbridge/ayrbridge/internal/natstest"
	"github.com/ayrbridge/ayrbridge/publish"
	"github.com/ayrbridge/ayrbridge/schema"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

const stream = "AYRSHARE"

// fixtures are published in this order, so sequence numbers in the golden files are stable.
func fixtures() []string {
	return []string{
		"scheduled_tiktok_published", "scheduled_success", "social_link", "messages_message_created",
		"messages_reaction_created", "batch", "feed", "account_activity_follow_events_follow",
	}
}

// receivedAt stands in for the arrival time of payloads without a created time.
var receivedAt = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// startStream runs a server with the stream the bridge creates and returns its URL.
func startStream(t *testing.T) (string, jetstream.JetStream) {
	t.Helper()
	ns := natstest.RunServer(t, "")
	_, js := natstest.Connect(t, ns)
	_, err := publish.EnsureStream(t.Context(), js, publish.StreamConfig{
		Name: stream, Subjects: []string{schema.StreamSubjects}, Replicas: 1, DedupWindow: 24 * time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	return ns.ClientURL(), js
}

// publishEvents stores webhook bodies the way the bridge does: schema.NewEvent, then
// publish.Publisher, which sends cenats.Msg(ev) and waits for the ack.
func publishEvents(t *testing.T, js jetstream.JetStream, bodies ...[]byte) {
	t.Helper()
	pub, err := publish.NewPublisher(js.Conn(), stream)
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range bodies {
		ev, err := schema.NewEvent(body, schema.Meta{ReceivedAt: receivedAt, DeliveryID: "d-1"})
		if err != nil {
			t.Fatal(err)
		}
		if _, dup, err := pub.Publish(t.Context(), ev); err != nil || dup {
			t.Fatalf("publish %s: duplicate %t, %v", ev.Subject, dup, err)
		}
	}
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "schema", "testdata", "fixtures", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// publishAll stores every fixture, an action this version does not type, and a message that is
// no CloudEvent at all.
func publishAll(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	var bodies [][]byte
	for _, name := range fixtures() {
		bodies = append(bodies, fixture(t, name))
	}
	bodies = append(bodies, []byte(`{"action":"comments","type":"commentCreated","hookId":"c-1","refId":"r-1"}`))
	publishEvents(t, js, bodies...)
	if _, err := js.Publish(t.Context(), "ayrshare.junk.none", []byte("not a CloudEvent")); err != nil {
		t.Fatal(err)
	}
}

// consume runs the example with -once and returns what it printed.
func consume(t *testing.T, cfg config) string {
	t.Helper()
	cfg.Once = true
	var out bytes.Buffer
	if err := run(t.Context(), cfg, &out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	return out.String()
}

func TestRunPrintsTypedEvents(t *testing.T) {
	url, js := startStream(t)
	publishAll(t, js)
	tests := map[string]struct {
		subject, golden string
	}{
		"whole stream":         {schema.StreamSubjects, "all.golden"},
		"scheduled posts only": {"ayrshare.scheduled.>", "scheduled.golden"},
		"one qualifier":        {"ayrshare.*.link", "link.golden"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got := consume(t, config{URL: url, Stream: stream, Durable: durableName(name), Subject: tt.subject})
			golden(t, tt.golden, got)
		})
	}
}

func TestRunStartsAtSince(t *testing.T) {
	url, js := startStream(t)
	publishAll(t, js)
	stored := natstest.Messages(t, js, stream)
	all := consume(t, config{URL: url, Stream: stream, Durable: "all", Subject: schema.StreamSubjects})
	tests := map[string]time.Time{
		"from the fourth event": stored[3].Time,
		"from the last event":   stored[len(stored)-1].Time,
		"from before the first": stored[0].Time.Add(-time.Hour),
		"from the future":       stored[len(stored)-1].Time.Add(time.Hour),
	}
	for name, since := range tests {
		t.Run(name, func(t *testing.T) {
			// The server delivers what it stored at or after since; derive that from its timestamps.
			var want strings.Builder
			for _, line := range lines(all) {
				if seq := lineSeq(t, line); !stored[seq-1].Time.Before(since) {
					want.WriteString(line + "\n")
				}
			}
			got := consume(t, config{URL: url, Stream: stream, Durable: durableName(name), Subject: schema.StreamSubjects, Since: since})
			if got != want.String() {
				t.Errorf("since %s printed:\n%s\nwant:\n%s", since.Format(time.RFC3339Nano), got, want.String())
			}
		})
	}
}

func TestRunAcksSoNothingIsRedelivered(t *testing.T) {
	url, js := startStream(t)
	publishEvents(t, js, fixture(t, "social_link"), fixture(t, "feed"))
	cfg := config{URL: url, Stream: stream, Durable: "acks", Subject: schema.StreamSubjects}

	if got := lines(consume(t, cfg)); len(got) != 2 {
		t.Fatalf("first run printed %d events, want 2: %q", len(got), got)
	}
	cfg.Since = receivedAt // ignored: the consumer exists
	if got := consume(t, cfg); got != "# consumer acks exists and goes on where it stopped; -since applies to new consumers only\n" {
		t.Errorf("second run printed %q, want only the note on -since", got)
	}
	publishEvents(t, js, fixture(t, "batch"))
	// The consumer learns of a new message a moment after the stream stored it, and -once goes
	// by the consumer's count: wait until it counts the batch event.
	natstest.Eventually(t, 5*time.Second, func() error {
		cons, err := js.Consumer(t.Context(), stream, "acks")
		if err != nil {
			return err
		}
		if ci, err := cons.Info(t.Context()); err != nil || ci.NumPending != 1 {
			return fmt.Errorf("consumer info %v, error %v: want 1 pending", ci, err)
		}
		return nil
	})
	got := lines(consume(t, cfg))
	if len(got) != 2 || !strings.Contains(got[1], "subject=ayrshare.batch.batch id=dI3PNhrG83j2FzAFJqkb") {
		t.Errorf("third run printed %q, want the note and the new batch event only", got)
	}
	assertAllAcked(t, js, "acks", 3)
}

func TestRunRefusesDurableWithOtherFilter(t *testing.T) {
	url, _ := startStream(t)
	cfg := config{URL: url, Stream: stream, Durable: "filtered", Subject: "ayrshare.feed.>"}
	consume(t, cfg)
	cfg.Subject = "ayrshare.scheduled.>"
	err := run(t.Context(), cfg, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), `consumer filtered on AYRSHARE filters "ayrshare.feed.>", not "ayrshare.scheduled.>"`) {
		t.Errorf("run = %v, want the filter conflict named", err)
	}
}

func TestRunFollowsUntilCancelled(t *testing.T) {
	url, js := startStream(t)
	publishEvents(t, js, fixture(t, "social_link"))
	ctx, cancel := context.WithCancel(t.Context())
	out := &logtest.Buffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, config{URL: url, Stream: stream, Durable: "follow", Subject: "ayrshare.>"}, out)
	}()
	printed := func(n int) func() error {
		return func() error {
			if got := lines(out.String()); len(got) != n {
				return fmt.Errorf("printed %d lines, want %d: %q", len(got), n, got)
			}
			return nil
		}
	}
	natstest.Eventually(t, 10*time.Second, printed(1))
	publishEvents(t, js, fixture(t, "feed")) // arrives while run waits
	natstest.Eventually(t, 10*time.Second, printed(2))
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run still following 10s after its context was cancelled")
	}
	got := lines(out.String())
	if !strings.Contains(got[0], "subject=ayrshare.social.link") || !strings.Contains(got[1], "subject=ayrshare.feed.none") {
		t.Errorf("printed %q, want the social event, then the feed event", got)
	}
	assertAllAcked(t, js, "follow", 2)
}

// assertAllAcked checks that durable acknowledged every message up to stream sequence seq and
// that none was delivered twice.
func assertAllAcked(t *testing.T, js jetstream.JetStream, durable string, seq uint64) {
	t.Helper()
	cons, err := js.Consumer(t.Context(), stream, durable)
	if err != nil {
		t.Fatal(err)
	}
	ci, err := cons.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if ci.NumAckPending != 0 || ci.NumRedelivered != 0 || ci.NumPending != 0 || ci.AckFloor.Stream != seq {
		t.Errorf("consumer %s: ack pending %d, redelivered %d, pending %d, ack floor %d; want 0, 0, 0, %d",
			durable, ci.NumAckPending, ci.NumRedelivered, ci.NumPending, ci.AckFloor.Stream, seq)
	}
}

func TestParseFlags(t *testing.T) {
	now := time.Date(2025, 6, 7, 12, 0, 0, 0, time.UTC)
	env := map[string]string{"NATS_URL": "nats://nats:4222"}
	tests := map[string]struct {
		args    []string
		env     map[string]string
		want    config
		wantErr string
	}{
		"defaults": {
			want: config{URL: "nats://127.0.0.1:4222", Stream: "AYRSHARE", Durable: "ayrbridge-example", Subject: "ayrshare.>"},
		},
		"environment": {
			env:  env,
			want: config{URL: "nats://nats:4222", Stream: "AYRSHARE", Durable: "ayrbridge-example", Subject: "ayrshare.>"},
		},
		"filter and age": {
			args: []string{"-subject", "ayrshare.scheduled.>", "-since", "2h", "-durable", "sched", "-once"},
			want: config{URL: "nats://127.0.0.1:4222", Stream: "AYRSHARE", Durable: "sched", Subject: "ayrshare.scheduled.>",
				Since: now.Add(-2 * time.Hour), Once: true},
		},
		"start time": {
			args: []string{"-since", "2024-06-07T11:58:44Z"},
			want: config{URL: "nats://127.0.0.1:4222", Stream: "AYRSHARE", Durable: "ayrbridge-example", Subject: "ayrshare.>",
				Since: time.Date(2024, 6, 7, 11, 58, 44, 0, time.UTC)},
		},
		"negative age":  {args: []string{"-since", "-2h"}, wantErr: "want a positive duration"},
		"no time":       {args: []string{"-since", "yesterday"}, wantErr: `-since "yesterday": want a duration like 2h or an RFC 3339 time`},
		"stray operand": {args: []string{"ayrshare.>"}, wantErr: "unexpected arguments"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := parseFlags(tt.args, func(k string) string { return tt.env[k] }, now)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseFlags error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("parseFlags = %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it):\n%s\nwant:\n%s", path, got, want)
	}
}

// lines splits output into its non-empty lines.
func lines(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == '\n' })
}

// lineSeq returns the stream sequence an output line starts with.
func lineSeq(t *testing.T, line string) int {
	t.Helper()
	field, _, _ := strings.Cut(strings.TrimPrefix(line, "seq="), " ")
	n, err := strconv.Atoi(field)
	if err != nil {
		t.Fatalf("line %q does not start with seq=N", line)
	}
	return n
}

func durableName(testName string) string {
	return strings.NewReplacer(" ", "-", ".", "-").Replace(testName)
}
