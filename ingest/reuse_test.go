package ingest

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ayrbridge/ayrbridge/internal/natstest"
	"github.com/ayrbridge/ayrbridge/publish"
)

// TestAnsweredBodyIsNotSentFromAReusedBuffer gives up on a publish (no stream answers yet, so
// the caller gets a 503 at its deadline) while the publisher may still send it, then
// overwrites the request's body as fasthttp does for the connection's next request. Whatever
// reaches NATS afterwards under the victim's id must carry the victim's bytes: a message that
// aliased the buffer would be stored corrupt under that id, and every retry of it answered
// as a duplicate.
func TestAnsweredBodyIsNotSentFromAReusedBuffer(t *testing.T) {
	ns := natstest.RunServer(t, "")
	nc, _ := natstest.Connect(t, ns)
	pub, err := publish.NewPublisher(nc, "AYRSHARE")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close(t.Context()) })
	h, err := NewHandler(pub, WithPublishTimeout(150*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	victim := []byte(`{"action":"feed","hookId":"victim","note":"the victim's own bytes"}`)
	// The next request on the connection, read into the same buffer.
	other := bytes.Repeat([]byte("X"), len(victim))

	// A late subscriber, as a stream leader coming back, receives what is still being sent.
	got := make(chan *nats.Msg, 64)
	for range 3 {
		req := serveReused(h, victim)
		if req.status != http.StatusServiceUnavailable {
			t.Fatalf("status %d, want 503 while no stream takes the subject", req.status)
		}
		copy(req.body, other) // fasthttp reads the next request into the same buffer
	}
	sub, err := nc.ChanSubscribe("ayrshare.>", got)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	deadline := time.After(2 * time.Second)
	seen := 0
	for {
		select {
		case m := <-got:
			if m.Header.Get(jetstream.MsgIDHeader) != "victim" {
				continue
			}
			seen++
			if !bytes.Equal(m.Data, victim) {
				t.Fatalf("sent under Nats-Msg-Id victim after its 503: %s", m.Data)
			}
		case <-deadline:
			if seen == 0 {
				t.Fatal("nothing was sent after the 503s: the test no longer reproduces a late send")
			}
			t.Logf("%d late sends of the victim seen, each with its own bytes", seen)
			return
		}
	}
}

// reusedRequest is a served request whose body buffer the test may overwrite afterwards.
type reusedRequest struct {
	status int
	body   []byte
}

func serveReused(h *Handler, body []byte) *reusedRequest {
	rc := newRequestCtx(body)
	h.ServeFastHTTP(rc)
	return &reusedRequest{status: rc.Response.StatusCode(), body: rc.Request.Body()}
}
