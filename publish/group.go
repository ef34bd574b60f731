package publish

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A group commit lets concurrent Publish calls share trips to JetStream without waiting for
// each other: a committer takes whatever is queued (up to the group size, never waiting for
// more), sends it all with PublishMsgAsync, and answers each caller from its own PubAck; while
// those acks are on their way the next callers queue up, so groups grow with the load and stay
// single messages when it is light. nats-server then reads, stores and acknowledges many
// messages per wake-up instead of one. A few committers take turns, so a call that arrives
// while one committer's group is on its way goes out with the next idle one instead of waiting.

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

// groups is the committers of one Publisher, started by its first Publish.
type groups struct {
	size     int
	inFlight int

	start sync.Once
	// mu makes closing queue and sending on it exclusive, so no Publish sends on a closed queue.
	// queue itself is made by NewPublisher and never replaced, so Stats reads it without mu.
	mu      sync.RWMutex
	closed  bool
	queue   chan *request
	stopped sync.WaitGroup
	stats   groupStats
}

// groupStats counts groups and the messages in them, for the mean group size.
type groupStats struct {
	groups   atomic.Uint64
	messages atomic.Uint64
}

func (s *groupStats) add(n int) {
	s.groups.Add(1)
	s.messages.Add(uint64(n))
}

// submit queues r for a committer, starting the committers on first use. It fails with
// ErrPublisherClosed after Close, or with ctx's error while the queue is full.
func (p *Publisher) submit(r *request) error {
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
	case <-r.ctx.Done():
		return r.ctx.Err()
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
		var first time.Time
		for i, r := range group {
			futs[i] = nil
			if err := r.ctx.Err(); err != nil {
				r.out <- answer{err: err} // its caller has gone: do not store what was answered as failed
				continue
			}
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
		for i, r := range group {
			if futs[i] != nil {
				r.out <- await(r, futs[i], timer)
				futs[i] = nil
			}
		}
		timer.Stop()
		clear(group) // drop the messages: a group's slice lives as long as its committer
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
	Groups  uint64 // groups of Publish calls sent to JetStream together
	Events  uint64 // events sent in those groups: Events/Groups is the mean group size
	Waiting int    // Publish calls queued for the next group now
}

// Stats reports the group commit's counts.
func (p *Publisher) Stats() Stats {
	g := &p.groups
	return Stats{Groups: g.stats.groups.Load(), Events: g.stats.messages.Load(), Waiting: len(g.queue)}
}
