package publish

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrStreamIncompatible means an existing stream cannot hold the bridge's events and will not be
// changed automatically; the operator must fix or remove it.
var ErrStreamIncompatible = errors.New("existing stream cannot serve the bridge")

// StreamConfig is what the bridge needs from its stream.
type StreamConfig struct {
	Name        string
	Subjects    []string      // subject filter; the bridge publishes on ayrshare.>
	Replicas    int           // 1 for a single server, 3 for a cluster
	DedupWindow time.Duration // how long JetStream remembers Nats-Msg-Id
	MaxAge      time.Duration // 0 keeps events forever
	// WorkQueue makes the stream an edge's store: a message is removed once the hub's sourcing
	// consumer acknowledged it, that is once the hub stored it, and never before.
	WorkQueue bool
	// MaxBytes bounds the stream (0: unbounded). A full stream refuses new messages rather
	// than discarding old ones, which may not have reached the hub yet.
	MaxBytes int64
}

// Validate reports every setting JetStream would refuse.
func (c StreamConfig) Validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("stream name is empty"))
	}
	if len(c.Subjects) == 0 {
		errs = append(errs, errors.New("stream has no subjects"))
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("stream replicas %d: want 1 to 5", c.Replicas))
	}
	if c.DedupWindow <= 0 {
		errs = append(errs, fmt.Errorf("dedup window %s: want a positive duration", c.DedupWindow))
	}
	if c.MaxAge < 0 {
		errs = append(errs, fmt.Errorf("max age %s: want 0 (keep) or a positive duration", c.MaxAge))
	}
	if c.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("max bytes %d: want 0 (unbounded) or a positive size", c.MaxBytes))
	}
	if c.WorkQueue && c.MaxAge > 0 {
		errs = append(errs, fmt.Errorf("max age %s on a work-queue stream would delete events the hub has not stored", c.MaxAge))
	}
	if c.MaxAge > 0 && c.DedupWindow > c.MaxAge {
		errs = append(errs, fmt.Errorf("dedup window %s exceeds max age %s", c.DedupWindow, c.MaxAge))
	}
	return errors.Join(errs...)
}

func (c StreamConfig) jetstream() jetstream.StreamConfig {
	sc := jetstream.StreamConfig{
		Name:        c.Name,
		Description: "Ayrshare webhooks as CloudEvents (ayrbridge)",
		Subjects:    c.Subjects,
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		Replicas:    c.Replicas,
		Duplicates:  c.DedupWindow,
		MaxAge:      c.MaxAge,
		MaxMsgs:     -1,
		MaxBytes:    -1,
		MaxMsgSize:  -1,
		// Lets the publisher store each group as one batch, flushed (and fsynced) once.
		AllowAtomicPublish: true,
	}
	if c.WorkQueue {
		sc.Description = "Ayrshare webhooks stored at this edge until the hub has them (ayrbridge)"
		sc.Retention = jetstream.WorkQueuePolicy
	}
	if c.MaxBytes > 0 {
		sc.MaxBytes, sc.Discard = c.MaxBytes, jetstream.DiscardNew
	}
	return sc
}

// EnsureStream creates the stream when it is missing and updates it when the settings the bridge
// owns differ. It returns an error wrapping ErrStreamIncompatible when the stream exists with
// settings that cannot be updated in place (storage, retention) or is sealed.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) (jetstream.Stream, error) {
	want := cfg.jetstream()
	s, err := js.Stream(ctx, cfg.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = js.CreateStream(ctx, want)
		if err != nil {
			return nil, fmt.Errorf("create stream %s: %w", cfg.Name, err)
		}
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up stream %s: %w", cfg.Name, err)
	}
	have := s.CachedInfo().Config
	if err := compatible(have, want); err != nil {
		return nil, fmt.Errorf("%w: stream %s %v", ErrStreamIncompatible, cfg.Name, err)
	}
	if !needsUpdate(have, want) {
		return s, nil
	}
	// Keep what an operator set that the bridge has no opinion on (limits, placement, sources).
	upd := have
	upd.Subjects = union(have.Subjects, want.Subjects)
	upd.Replicas = want.Replicas
	upd.Duplicates = want.Duplicates
	upd.MaxAge = want.MaxAge
	if owned(have) {
		upd.AllowAtomicPublish = true
	}
	if want.MaxBytes > 0 {
		upd.MaxBytes, upd.Discard = want.MaxBytes, want.Discard
	}
	s, err = js.UpdateStream(ctx, upd)
	if err != nil {
		return nil, fmt.Errorf("update stream %s: %w", cfg.Name, err)
	}
	return s, nil
}

func compatible(have, want jetstream.StreamConfig) error {
	var errs []error
	if have.Storage != want.Storage {
		errs = append(errs, fmt.Errorf("has %s storage, needs %s", have.Storage, want.Storage))
	}
	if have.Retention != want.Retention {
		errs = append(errs, fmt.Errorf("has %s retention, needs %s (events must outlive their consumers)", have.Retention, want.Retention))
	}
	if have.Sealed {
		errs = append(errs, errors.New("is sealed"))
	}
	if have.NoAck {
		errs = append(errs, errors.New("does not acknowledge publishes (no_ack)"))
	}
	return errors.Join(errs...)
}

// owned reports whether the bridge created the stream (its description says so): only then does
// an update turn on what a newer bridge creates its streams with. A stream an operator made
// keeps its settings, and the publisher sends to it one message at a time if it must.
func owned(have jetstream.StreamConfig) bool {
	return strings.HasSuffix(have.Description, "(ayrbridge)")
}

func needsUpdate(have, want jetstream.StreamConfig) bool {
	return len(union(have.Subjects, want.Subjects)) != len(have.Subjects) ||
		(owned(have) && !have.AllowAtomicPublish) ||
		have.Replicas != want.Replicas ||
		have.Duplicates != want.Duplicates ||
		have.MaxAge != want.MaxAge ||
		(want.MaxBytes > 0 && (have.MaxBytes != want.MaxBytes || have.Discard != want.Discard))
}

func union(a, b []string) []string {
	out := slices.Clone(a)
	for _, s := range b {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
