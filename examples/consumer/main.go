// Command consumer is an example subscriber of the ayrbridge stream. It creates (or binds to) a
// durable JetStream pull consumer, decodes each message into a CloudEvent with cenats.DecodeMsg
// and its data into the typed Ayrshare payload with schema.Payload, prints one line per event and
// acknowledges it, so a restart goes on where the last run stopped.
//
//	go run ./examples/consumer                                      # every event, then wait for more
//	go run ./examples/consumer -subject 'ayrshare.scheduled.>'      # scheduled posts only
//	go run ./examples/consumer -durable last-2h -since 2h -once     # the last two hours, then exit
//
// NATS_URL (default nats://127.0.0.1:4222) and NATS_STREAM (default AYRSHARE) set the server and
// the stream, as for the bridge.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ayrbridge/ayrbridge/publish/cenats"
	"github.com/ayrbridge/ayrbridge/schema"
)

// batchSize is how many messages one pull asks for.
const batchSize = 64

// ackTimeout bounds the wait for the server to confirm an acknowledgement.
const ackTimeout = 5 * time.Second

// config is what the command line sets.
type config struct {
	URL     string    // NATS server URL(s), comma-separated
	Stream  string    // stream the bridge publishes to
	Durable string    // durable consumer name: its position survives restarts
	Subject string    // subject filter, e.g. ayrshare.scheduled.>
	Since   time.Time // first message time for a new consumer; zero means the whole stream
	Once    bool      // exit once every message so far is handled instead of waiting for more
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := parseFlags(os.Args[1:], os.Getenv, time.Now())
	if err != nil {
		fmt.Fprintln(os.Stderr, "consumer:", err)
		os.Exit(2)
	}
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "consumer:", err)
		os.Exit(1)
	}
}

// parseFlags reads the command line; getenv supplies the NATS_URL and NATS_STREAM defaults and
// now anchors a relative -since.
func parseFlags(args []string, getenv func(string) string, now time.Time) (config, error) {
	cfg := config{URL: getenv("NATS_URL"), Stream: getenv("NATS_STREAM")}
	if cfg.URL == "" {
		cfg.URL = nats.DefaultURL
	}
	if cfg.Stream == "" {
		cfg.Stream = "AYRSHARE"
	}
	fs := flag.NewFlagSet("consumer", flag.ContinueOnError)
	fs.StringVar(&cfg.URL, "url", cfg.URL, "NATS server URL(s), comma-separated (env NATS_URL)")
	fs.StringVar(&cfg.Stream, "stream", cfg.Stream, "stream to read (env NATS_STREAM)")
	fs.StringVar(&cfg.Durable, "durable", "ayrbridge-example", "durable consumer name; a new name starts a new reader")
	fs.StringVar(&cfg.Subject, "subject", schema.StreamSubjects, "subject filter, e.g. 'ayrshare.scheduled.>' or 'ayrshare.*.tikTokPublished'")
	since := fs.String("since", "", "for a new consumer, start at this age (2h) or RFC 3339 time instead of the stream's first event")
	fs.BoolVar(&cfg.Once, "once", false, "exit when every event so far is handled")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	start, err := parseSince(*since, now)
	if err != nil {
		return config{}, err
	}
	cfg.Since = start
	return cfg, nil
}

// parseSince reads -since: empty, a positive duration back from now, or an RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return time.Time{}, fmt.Errorf("-since %s: want a positive duration", s)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("-since %q: want a duration like 2h or an RFC 3339 time: %w", s, err)
	}
	return t, nil
}

// run consumes until ctx ends (or, with cfg.Once, until nothing is left) and writes a line per
// event to out. A message that is not an ayrbridge CloudEvent is reported and terminated, so it
// is not redelivered.
func run(ctx context.Context, cfg config, out io.Writer) error {
	nc, err := nats.Connect(cfg.URL, nats.Name("ayrbridge-consumer-example"))
	if err != nil {
		return fmt.Errorf("connect to %s: %w", cfg.URL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	cons, created, err := bindOrCreate(ctx, js, cfg)
	if err != nil {
		return err
	}
	if !created && !cfg.Since.IsZero() {
		fmt.Fprintf(out, "# consumer %s exists and goes on where it stopped; -since applies to new consumers only\n", cfg.Durable)
	}
	if cfg.Once {
		return drain(ctx, cons, out)
	}
	return follow(ctx, cons, out)
}

// bindOrCreate returns the durable consumer, creating it when missing; created says which.
func bindOrCreate(ctx context.Context, js jetstream.JetStream, cfg config) (jetstream.Consumer, bool, error) {
	cons, err := js.Consumer(ctx, cfg.Stream, cfg.Durable)
	if err == nil {
		if have := cons.CachedInfo().Config.FilterSubject; have != cfg.Subject {
			return nil, false, fmt.Errorf("consumer %s on %s filters %q, not %q: use another -durable, or delete it with `nats consumer rm %s %s`",
				cfg.Durable, cfg.Stream, have, cfg.Subject, cfg.Stream, cfg.Durable)
		}
		return cons, false, nil
	}
	if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, false, fmt.Errorf("look up consumer %s on %s: %w", cfg.Durable, cfg.Stream, err)
	}
	cc := jetstream.ConsumerConfig{
		Durable:       cfg.Durable,
		Description:   "ayrbridge consumer example",
		FilterSubject: cfg.Subject,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	if !cfg.Since.IsZero() {
		start := cfg.Since
		cc.DeliverPolicy, cc.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
	}
	cons, err = js.CreateConsumer(ctx, cfg.Stream, cc)
	if err != nil {
		return nil, false, fmt.Errorf("create consumer %s on %s: %w", cfg.Durable, cfg.Stream, err)
	}
	return cons, true, nil
}

// drain handles every message the consumer has, then returns.
func drain(ctx context.Context, cons jetstream.Consumer, out io.Writer) error {
	wait, unanswered := false, 0
	for {
		done, err := drainStep(ctx, cons, out, &wait)
		if errors.Is(err, nats.ErrNoResponders) && unanswered < maxUnanswered && ctx.Err() == nil {
			// A consumer on a replicated stream answers once its leader is elected.
			unanswered++
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		if err != nil || done {
			return err
		}
		unanswered = 0
	}
}

// maxUnanswered bounds the retries of requests no consumer leader answered (about 30s).
const maxUnanswered = 300

// drainStep handles one batch and reports whether nothing is left. With *wait it waits up to a
// second for messages; it sets *wait when messages are pending that cannot be delivered yet
// (taken without an ack by an earlier run: they come back after AckWait).
func drainStep(ctx context.Context, cons jetstream.Consumer, out io.Writer, wait *bool) (bool, error) {
	var batch jetstream.MessageBatch
	var err error
	if *wait {
		batch, err = cons.Fetch(batchSize, jetstream.FetchMaxWait(time.Second))
	} else {
		batch, err = cons.FetchNoWait(batchSize)
	}
	if err != nil {
		return false, fmt.Errorf("fetch: %w", err)
	}
	n, err := handleBatch(ctx, batch, out)
	if err != nil || n > 0 {
		*wait = false
		return false, err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return false, fmt.Errorf("consumer info: %w", err)
	}
	*wait = info.NumPending > 0 || info.NumAckPending > 0
	return !*wait, ctx.Err()
}

func handleBatch(ctx context.Context, batch jetstream.MessageBatch, out io.Writer) (int, error) {
	n := 0
	for msg := range batch.Messages() {
		n++
		if err := handle(ctx, msg, out); err != nil {
			return n, err
		}
	}
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
		return n, fmt.Errorf("fetch: %w", err)
	}
	return n, nil
}

// follow handles messages as they come until ctx ends.
func follow(ctx context.Context, cons jetstream.Consumer, out io.Writer) error {
	it, err := cons.Messages(jetstream.PullMaxMessages(batchSize))
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	defer it.Stop()
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("next message: %w", err)
		}
		if err := handle(ctx, msg, out); err != nil {
			return err
		}
	}
}

// handle prints one message and acknowledges it, waiting for the server to confirm the ack so
// that a restart right after never sees it again. The ack outlives a cancelled ctx by up to
// ackTimeout: an event that was handled is acknowledged even during shutdown.
func handle(ctx context.Context, msg jetstream.Msg, out io.Writer) error {
	seq := uint64(0)
	if meta, err := msg.Metadata(); err == nil {
		seq = meta.Sequence.Stream
	}
	ev, err := cenats.DecodeMsg(ctx, &nats.Msg{Subject: msg.Subject(), Header: msg.Headers(), Data: msg.Data()})
	if err != nil {
		fmt.Fprintf(out, "seq=%d subject=%s skipped: %v\n", seq, msg.Subject(), err)
		return term(msg)
	}
	payload, err := schema.Payload(ev.Data())
	if err != nil {
		fmt.Fprintf(out, "seq=%d subject=%s id=%s skipped: %v\n", seq, msg.Subject(), ev.ID(), err)
		return term(msg)
	}
	fmt.Fprintf(out, "seq=%d subject=%s id=%s type=%s time=%s %s\n",
		seq, msg.Subject(), ev.ID(), ev.Type(), ev.Time().UTC().Format(time.RFC3339), describe(payload))
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ackTimeout)
	defer cancel()
	if err := msg.DoubleAck(actx); err != nil {
		return fmt.Errorf("ack %s: %w", ev.ID(), err)
	}
	return nil
}

// term tells the server never to deliver msg again.
func term(msg jetstream.Msg) error {
	if err := msg.Term(); err != nil {
		return fmt.Errorf("terminate message on %s: %w", msg.Subject(), err)
	}
	return nil
}

// describe summarises a typed payload as key=value pairs.
func describe(payload any) string {
	var kv []string
	add := func(k, v string) {
		if v != "" {
			kv = append(kv, k+"="+quote(v))
		}
	}
	switch p := payload.(type) {
	case *schema.Scheduled:
		add("refId", p.RefID)
		add("status", p.Status)
		add("post", p.ID)
		var platforms []string
		for _, id := range p.PostIDs {
			platforms = append(platforms, id.Platform+":"+id.Status)
		}
		add("platforms", strings.Join(platforms, ","))
	case *schema.Social:
		add("refId", p.RefID)
		add("platform", p.Platform)
		add("displayName", p.DisplayName)
		add("refreshBy", p.RefreshBy)
	case *schema.Message:
		add("platform", p.Platform)
		add("conversation", p.ConversationID)
		if p.SenderDetails != nil {
			add("from", p.SenderDetails.Username)
		}
		add("message", p.Message)
		add("reaction", p.Reaction)
	case *schema.Batch:
		add("batchType", p.BatchType)
		add("users", p.UserCount.String())
		add("url", p.URL)
		add("expires", p.URLExpires)
	case *schema.Feed:
		add("title", p.Title)
		add("url", p.URL)
	case *schema.AccountActivity:
		add("refId", p.RefID)
		add("events", strings.Join(activityEvents(p), ","))
	case *schema.Unknown:
		add("action", p.Action)
		kv = append(kv, "(no typed payload for this action)")
	}
	return strings.Join(kv, " ")
}

// activityEvents names the X event lists an account activity payload carries.
func activityEvents(p *schema.AccountActivity) []string {
	var names []string
	for _, f := range []struct {
		name string
		raw  []byte
	}{
		{"tweetCreateEvents", p.TweetCreateEvents}, {"tweetDeleteEvents", p.TweetDeleteEvents},
		{"favoriteEvents", p.FavoriteEvents}, {"followEvents", p.FollowEvents},
		{"blockEvents", p.BlockEvents}, {"muteEvents", p.MuteEvents}, {"userEvent", p.UserEvent},
		{"directMessageEvents", p.DirectMessageEvents},
		{"directMessageIndicateTypingEvents", p.DirectMessageTyping},
		{"directMessageMarkReadEvents", p.DirectMessageMarkRead},
	} {
		if len(f.raw) > 0 {
			names = append(names, f.name)
		}
	}
	return names
}

// quote quotes values that would not read as one word.
func quote(s string) string {
	if strings.ContainsAny(s, " \t\n\"=") {
		return strconv.Quote(s)
	}
	return s
}
