package publish_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ayrbridge/ayrbridge/internal/natstest"
	"github.com/ayrbridge/ayrbridge/publish"
)

// TestLazyServerWritesBeforeItAcks pins what StoreSync relies on: a lazy nats-server has
// written every message to its block file (the page cache, where an fsync finds it) before it
// acknowledges it. If a server version ever buffered acknowledged messages in its own memory,
// an fsync after the acks would not cover them and this test fails.
func TestLazyServerWritesBeforeItAcks(t *testing.T) {
	dir := t.TempDir()
	ns := natstest.RunServerWith(t, publish.EmbeddedConfig{StoreDir: dir})
	nc, js := natstest.Connect(t, ns)
	if _, err := publish.EnsureStream(t.Context(), js, streamConfig()); err != nil {
		t.Fatal(err)
	}
	p := newPublisher(t, nc, "AYRSHARE")
	for i := range 200 {
		marker := fmt.Sprintf("marker-%d-%d", i, time.Now().UnixNano())
		if _, _, err := p.Publish(t.Context(), event(t, `{"action":"feed","hookId":"`+marker+`"}`)); err != nil {
			t.Fatal(err)
		}
		if !blocksHold(t, dir, []byte(marker)) {
			t.Fatalf("message %d was acknowledged before it was in a block file", i)
		}
	}
}

// blocksHold reports whether any message block under dir holds b.
func blocksHold(t *testing.T, dir string, b []byte) bool {
	t.Helper()
	found := false
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || found || !strings.HasSuffix(path, ".blk") {
			return err
		}
		data, err := os.ReadFile(path)
		found = err == nil && bytes.Contains(data, b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// TestStoreSync shares rounds among concurrent callers, and refuses once stopped.
func TestStoreSync(t *testing.T) {
	dir := t.TempDir()
	ns := natstest.RunServerWith(t, publish.EmbeddedConfig{StoreDir: dir})
	nc, js := natstest.Connect(t, ns)
	if _, err := publish.EnsureStream(t.Context(), js, streamConfig()); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(t.Context())
	s, err := publish.NewStoreSync(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	p := newPublisher(t, nc, "AYRSHARE", publish.WithSyncer(s))
	var ids []string
	for i := range 200 {
		ids = append(ids, fmt.Sprint("s", i))
	}
	requireStoredAsAnswered(t, js, publishAll(t, p, ids, 32))
	stop()
	natstest.Eventually(t, 5*time.Second, func() error {
		if err := s.Sync(t.Context()); !errors.Is(err, publish.ErrStoreSyncStopped) {
			return fmt.Errorf("Sync after stop = %v", err)
		}
		return nil
	})
	if _, _, err := p.Publish(t.Context(), feed(t, "late")); !errors.Is(err, publish.ErrUnavailable) {
		t.Errorf("publish without a syncer running = %v, want ErrUnavailable: an ack that cannot be made durable is no ack", err)
	}
}
