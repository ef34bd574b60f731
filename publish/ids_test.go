package publish_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ayrbridge/ayrbridge/internal/natstest"
	"github.com/ayrbridge/ayrbridge/publish"
	"github.com/ayrbridge/ayrbridge/publish/cenats"
)

// publishIDs stores one message per id and returns the time the server stored the first one.
func publishIDs(t *testing.T, js jetstream.JetStream, ids ...string) time.Time {
	t.Helper()
	var first time.Time
	for i, id := range ids {
		m := nats.NewMsg("ayrshare.test.none")
		if id != "" {
			m.Header.Set(nats.MsgIdHdr, id)
		}
		m.Data = []byte(`{"big":"body that must not be read"}`)
		ack, err := js.PublishMsg(t.Context(), m)
		if err != nil {
			t.Fatalf("publish %q: %v", id, err)
		}
		if i == 0 {
			s, _ := js.Stream(t.Context(), "AYRSHARE")
			raw, err := s.GetMsg(t.Context(), ack.Sequence)
			if err != nil {
				t.Fatalf("get %d: %v", ack.Sequence, err)
			}
			first = raw.Time
		}
	}
	return first
}

func collectIDs(t *testing.T, js jetstream.JetStream, since time.Time) (int, []string) {
	t.Helper()
	var ids []string
	n, err := publish.StoredIDs(t.Context(), js, "AYRSHARE", since, func(id string) { ids = append(ids, id) })
	if err != nil {
		t.Fatalf("stored ids: %v", err)
	}
	return n, ids
}

func TestStoredIDs(t *testing.T) {
	_, js := newStream(t)
	if n, ids := collectIDs(t, js, time.Time{}); n != 0 || len(ids) != 0 {
		t.Fatalf("empty stream: read %d, ids %v", n, ids)
	}

	var old []string
	for i := range 5000 { // more than one pull batch
		old = append(old, fmt.Sprint("old-", i))
	}
	publishIDs(t, js, old...)
	recent := publishIDs(t, js, "new-1", "new-2")
	// A message with only ce-id still names its event; one with neither is skipped.
	m := nats.NewMsg("ayrshare.test.none")
	m.Header.Set(cenats.HeaderID, "ce-only")
	if _, err := js.PublishMsg(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	publishIDs(t, js, "")

	n, ids := collectIDs(t, js, recent)
	if want := []string{"new-1", "new-2", "ce-only"}; n != 4 || fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Fatalf("since the recent ones: read %d, ids %v; want 4 read, ids %v", n, ids, want)
	}
	n, ids = collectIDs(t, js, time.Time{})
	if n != 5004 || len(ids) != 5003 || ids[0] != "old-0" || ids[4999] != "old-4999" {
		t.Fatalf("whole stream: read %d, %d ids (first %q); want 5004 read, 5003 ids", n, len(ids), ids[0])
	}
	if n, ids := collectIDs(t, js, time.Now().Add(time.Hour)); n != 0 || len(ids) != 0 {
		t.Fatalf("since the future: read %d, ids %v", n, ids)
	}
}

func TestStoredIDsMissingStream(t *testing.T) {
	ns := natstest.RunServer(t, "")
	_, js := natstest.Connect(t, ns)
	_, err := publish.StoredIDs(t.Context(), js, "NOPE", time.Time{}, func(string) {})
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("err = %v, want ErrStreamNotFound", err)
	}
}
