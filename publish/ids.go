package publish

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ayrbridge/ayrbridge/publish/cenats"
)

// idBatch is how many header-only messages the reader asks for at once: a few hundred bytes each,
// so the client buffers about a megabyte.
const idBatch = 4096

// idleCheck is how long the reader waits for a message before asking the server whether any
// are left, so a stream trimmed while it reads cannot leave it waiting forever.
const idleCheck = time.Second

// StoredIDs calls fn with the event id of every message the stream stored at or after since
// (every message when since is zero), in stream order. It reads headers only, through an
// ephemeral ordered consumer, so message bodies never leave the server. The id is the
// Nats-Msg-Id header, else ce-id; messages with neither are skipped. It stops at the last
// message the stream held when it started: messages published meanwhile may or may not be seen.
//
// It returns how many messages it read. A missing stream gives an error wrapping
// jetstream.ErrStreamNotFound.
func StoredIDs(ctx context.Context, js jetstream.JetStream, stream string, since time.Time, fn func(id string)) (int, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", stream, err)
	}
	state := s.CachedInfo().State
	if state.Msgs == 0 || state.LastTime.Before(since) {
		return 0, nil
	}
	cfg := jetstream.OrderedConsumerConfig{HeadersOnly: true, InactiveThreshold: 30 * time.Second}
	if !since.IsZero() {
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &since
	}
	cons, err := s.OrderedConsumer(ctx, cfg)
	if err != nil {
		return 0, fmt.Errorf("stream %s: read ids: %w", stream, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(idBatch))
	if err != nil {
		return 0, fmt.Errorf("stream %s: read ids: %w", stream, err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()

	n, last := 0, uint64(0)
	for {
		msg, err := it.Next(jetstream.NextMaxWait(idleCheck))
		if errors.Is(err, nats.ErrTimeout) {
			if done, err := drained(ctx, cons, last); err != nil || done {
				return n, err
			}
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return n, fmt.Errorf("stream %s: read ids: %w", stream, ctx.Err())
			}
			return n, fmt.Errorf("stream %s: read ids: %w", stream, err)
		}
		n++
		h := msg.Headers()
		id := h.Get(nats.MsgIdHdr)
		if id == "" {
			id = h.Get(cenats.HeaderID)
		}
		if id != "" {
			fn(id)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return n, fmt.Errorf("stream %s: read ids: %w", stream, err)
		}
		last = meta.Sequence.Stream
		if last >= state.LastSeq || meta.NumPending == 0 {
			return n, nil
		}
	}
}

// drained reports whether the consumer has nothing left to deliver and nothing on its way to
// the client: the last message it delivered is the last one read (seq).
func drained(ctx context.Context, cons jetstream.Consumer, seq uint64) (bool, error) {
	info, err := cons.Info(ctx)
	if err != nil {
		return false, fmt.Errorf("read ids: consumer info: %w", err)
	}
	return info.NumPending == 0 && info.Delivered.Stream <= seq, nil
}
