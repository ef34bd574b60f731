package publish

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
)

// A group commit lets concurrent Publish calls share trips to JetStream without waiting for
// each other: a committer takes whatever is queued (up to the group size, never waiting for
// more), sends it, and answers each caller; while that group is on its way the next callers
// queue up, so groups grow with the load and stay single messages when it is light. A few
// committers take turns, so a call that arrives while one committer's group is on its way goes
// out with the next idle one instead of waiting.
//
// A group of minBatch or more goes out as one JetStream atomic batch: the server stages it and
// writes it with one flush, so with sync_interval: always a group costs one fsync instead of
// one per event (docs/reliability.md). The batch either stores every message, contiguously,
// or none; each caller's sequence follows from the batch's last. A batch refused for a reason
// that may concern one message (a duplicate id, the stream's limits) is sent again one
// message at a time, so every caller still gets its own answer.

// request is one Publish call's first attempt, queued for a committer.
type request struct {
	// ctx is the caller's: when it ends the committer stops waiting for this message's ack.
	ctx context.Context
	// deadline ends the attempt: an ack not in by then is reported as errAttemptTimeout, and the
	// caller sends the message again. The committer keeps this time, so a call costs no timer.
	deadline time.Time
	msg      *nats.Msg
	// out gets exactly one answer; it is buffered so a caller that gave up blocks no committer.
	out chan answer
}

// errAttemptTimeout is a committer's answer for a message whose ack did not come in its attempt.
var errAttemptTimeout = fmt.Errorf("publish attempt: no acknowledgement in time: %w", context.DeadlineExceeded)

type answer struct {
	ack *jetstream.PubAck
	err error
}

// defaultMinBatch is the smallest group sent as an atomic batch unless WithMinBatch says otherwise. The server stages each batch in a
// store of its own, which costs more than the fsyncs a small group saves: against a server
// syncing always, 8 connections did 1,213 req/s in batches and 1,996 one message at a time,
// 64 connections (groups of about 30) 4,638 and 3,036 (docs/performance.md).
const defaultMinBatch = 16

// groups is the committers of one Publisher, started by its first Publish.
type groups struct {
	size     int
	inFlight int
	minBatch int
	// batches is cleared for good when the stream refuses atomic batches: it was not created
	// with them (a stream the bridge does not own) or the server predates them.
	batches atomic.Bool

	start sync.Once
	// mu makes closing queue and sending on it exclusive, so no Publish sends on a closed queue.
	// queue itself is made by NewPublisher and never replaced, so Stats reads it without mu.
	mu      sync.RWMutex
	closed  bool
	queue   chan *request
	stopped sync.WaitGroup
	stats   groupStats
}

// groupStats counts groups and the messages in them, for the mean group size, and the groups
// sent as atomic batches and those sent again one message at a time.
type groupStats struct {
	groups    atomic.Uint64
	messages  atomic.Uint64
	batches   atomic.Uint64
	fallbacks atomic.Uint64
}

func (s *groupStats) add(n int) {
	s.groups.Add(1)
	s.messages.Add(uint64(n))
}

// submit queues r for a committer, starting the committers on first use. It fails with
// ErrPublisherClosed after Close, or with ctx's error while the queue is full.
func (p *Publisher) submit(ctx context.Context, r *request) error {
	g := &p.groups
	g.start.Do(func() {
		g.stopped.Add(g.inFlight)
		for range g.inFlight {
			go p.commit()
		}
	})
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.closed {
		return ErrPublisherClosed
	}
	select {
	case g.queue <- r:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// closeGroups lets the committers finish what is queued and stop.
func (p *Publisher) closeGroups() {
	g := &p.groups
	g.start.Do(func() {}) // a publisher that never published starts no committer now
	g.mu.Lock()
	if !g.closed {
		close(g.queue)
	}
	g.closed = true
	g.mu.Unlock()
	g.stopped.Wait()
}

// commit runs one committer: one group in flight at a time, the next taken when its acks are in.
func (p *Publisher) commit() {
	g := &p.groups
	defer g.stopped.Done()
	group := make([]*request, 0, g.size)
	live := make([]*request, 0, g.size)
	msgs := make([]*nats.Msg, 0, g.size)
	futs := make([]jetstream.PubAckFuture, g.size)
	// One timer per committer, armed once per group for its earliest attempt deadline and reset
	// only when that passes with acks still out: a group's acks mostly arrive together.
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		r, ok := <-g.queue
		if !ok {
			return
		}
		group = append(group[:0], r)
	fill:
		for len(group) < g.size {
			select {
			case r, ok := <-g.queue:
				if !ok {
					break fill
				}
				group = append(group, r)
			default:
				break fill
			}
		}
		g.stats.add(len(group))
		live = live[:0]
		for _, r := range group {
			if err := r.ctx.Err(); err != nil {
				r.out <- answer{err: err} // its caller has gone: do not store what was answered as failed
				continue
			}
			live = append(live, r)
		}
		if len(live) >= g.minBatch && g.batches.Load() {
			msgs = msgs[:0]
			for _, r := range live {
				msgs = append(msgs, r.msg)
			}
			answered := p.commitBatch(live, msgs)
			clear(msgs)
			if answered {
				clear(group)
				continue
			}
			g.stats.fallbacks.Add(1)
		}
		p.commitEach(live, futs, timer)
		clear(group) // drop the messages: a group's slice lives as long as its committer
		clear(live)
	}
}

// commitBatch sends group as one atomic batch and answers every caller, or reports false when
// the server refused the batch for a reason that may be one message's: the caller then sends
// the group one message at a time. The batch waits no longer than the group's earliest
// attempt deadline; a batch that timed out may still be stored, and its callers' next
// attempts, with the same ids, are then answered as duplicates.
func (p *Publisher) commitBatch(group []*request, msgs []*nats.Msg) (answered bool) {
	deadline := group[0].deadline
	for _, r := range group[1:] {
		if r.deadline.Before(deadline) {
			deadline = r.deadline
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	// No flow control: the server answers only the commit, so a group costs one round trip.
	ack, err := jetstreamext.PublishMsgBatch(ctx, p.js, msgs, jetstreamext.BatchFlowControl{})
	if err == nil {
		p.groups.stats.batches.Add(1)
		sctx, cancel := context.WithTimeout(context.Background(), p.timeout)
		err = p.durable(sctx)
		cancel()
		first := ack.Sequence + 1 - uint64(len(group))
		for i, r := range group {
			if err != nil {
				r.out <- answer{err: err}
				continue
			}
			r.out <- answer{ack: &jetstream.PubAck{Stream: ack.Stream, Domain: ack.Domain, Sequence: first + uint64(i)}}
		}
		return true
	}
	var apiErr *jetstream.APIError
	switch {
	case errors.As(err, &apiErr) && apiErr.ErrorCode == jetstreamext.JSErrCodeBatchPublishNotEnabled,
		errors.Is(err, jetstreamext.ErrInvalidBatchAck):
		// A server before 2.12 stores batch messages as plain ones and acknowledges the last:
		// sent again one by one, each is answered from the duplicate window.
		if p.groups.batches.Swap(false) {
			p.log.Warn().Err(err).Str("stream", p.stream).
				Msg("the stream does not take atomic batches (allow_atomic): publishing one message at a time, each with its own fsync when the server syncs always")
		}
		return false
	case apiErr != nil:
		p.log.Debug().Err(err).Int("group", len(group)).Msg("atomic batch refused, sending its messages one at a time")
		return false
	case errors.Is(err, context.DeadlineExceeded):
		err = errAttemptTimeout
	}
	for _, r := range group {
		r.out <- answer{err: err}
	}
	return true
}

// commitEach sends every message of group on its own and answers each caller from its own ack.
func (p *Publisher) commitEach(group []*request, futs []jetstream.PubAckFuture, timer *time.Timer) {
	var first time.Time
	for i, r := range group {
		futs[i] = nil
		// No options: the message carries its headers already, so nothing writes to it
		// while the caller may be sending it again after giving up on this attempt.
		fut, err := p.js.PublishMsgAsync(r.msg)
		if err != nil {
			r.out <- answer{err: err}
			continue
		}
		futs[i] = fut
		if first.IsZero() || r.deadline.Before(first) {
			first = r.deadline
		}
	}
	if !first.IsZero() {
		timer.Reset(time.Until(first))
	}
	if p.sync == nil {
		for i, r := range group {
			if futs[i] != nil {
				r.out <- await(r, futs[i], timer)
				futs[i] = nil
			}
		}
		timer.Stop()
		return
	}
	// Every ack of the group first, then one fsync round for all of them, then the answers.
	answers := make([]answer, len(group))
	acked := false
	for i, r := range group {
		if futs[i] != nil {
			answers[i] = await(r, futs[i], timer)
			futs[i] = nil
			acked = acked || answers[i].err == nil
		}
	}
	timer.Stop()
	if acked {
		ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
		if err := p.durable(ctx); err != nil {
			for i := range answers {
				if answers[i].err == nil {
					answers[i] = answer{err: err}
				}
			}
		}
		cancel()
	}
	for i, r := range group {
		if answers[i].ack != nil || answers[i].err != nil {
			r.out <- answers[i]
		}
	}
}

// await is r's answer: its ack, its error, its caller giving up, or the end of its attempt.
// timer may be armed for an earlier message of the group, whose deadline is no later than r's.
func await(r *request, fut jetstream.PubAckFuture, timer *time.Timer) answer {
	for {
		select {
		case ack := <-fut.Ok():
			return answer{ack: ack}
		case err := <-fut.Err():
			return answer{err: err}
		case <-r.ctx.Done():
			return answer{err: r.ctx.Err()}
		case <-timer.C:
			// Since Go 1.23 a timer's channel holds no stale tick: it fired for this group.
			left := time.Until(r.deadline)
			if left <= 0 {
				return answer{err: errAttemptTimeout}
			}
			timer.Reset(left)
		}
	}
}

// Stats is what a Publisher's group commit has done so far.
type Stats struct {
	Groups    uint64 // groups of Publish calls sent to JetStream together
	Events    uint64 // events sent in those groups: Events/Groups is the mean group size
	Batches   uint64 // groups stored as one atomic batch
	Fallbacks uint64 // groups whose batch was refused and that were sent one message at a time
	Waiting   int    // Publish calls queued for the next group now
}

// Stats reports the group commit's counts.
func (p *Publisher) Stats() Stats {
	g := &p.groups
	return Stats{
		Groups: g.stats.groups.Load(), Events: g.stats.messages.Load(),
		Batches: g.stats.batches.Load(), Fallbacks: g.stats.fallbacks.Load(),
		Waiting: len(g.queue),
	}
}
