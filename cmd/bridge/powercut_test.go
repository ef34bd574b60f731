package main

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/ayrbridge/ayrbridge/internal/natstest"
	"github.com/ayrbridge/ayrbridge/internal/powercut"
	"github.com/ayrbridge/ayrbridge/publish/cenats"
)

// TestPowerCut cuts the power under a bridge on its embedded server, 32 senders, at random
// moments: its store lives on a file system that loses every write not fsynced when cut
// (internal/powercut), the bridge is SIGKILLed, and it is started again on what the disk kept.
// Durable (the default), every id answered 200 is in the stream once, byte for byte, and the
// bridge starts every time. The control runs the same cuts with NATS_EMBEDDED_SYNC_ALWAYS=false
// and must lose acknowledged events: if it loses none, the harness stopped biting.
func TestPowerCut(t *testing.T) {
	bin := buildBridge(t)
	if err := powercut.Available(); err != nil {
		t.Skipf("power-cut tests need root and FUSE: %v", err)
	}
	const cuts = 10
	// group: the default, the bridge fsyncs the store once per group of acks; server:
	// nats-server fsyncs every write, and groups go as atomic batches.
	for _, fsync := range []string{"group", "server"} {
		t.Run("durable-"+fsync, func(t *testing.T) {
			r := cutEmbedded(t, bin, map[string]string{"NATS_EMBEDDED_SYNC_ALWAYS": "true", "NATS_EMBEDDED_FSYNC": fsync}, cuts)
			if r.lost != 0 || r.dups != 0 || r.corrupt != 0 {
				t.Errorf("durable: %s", r)
			}
		})
	}
	t.Run("control", func(t *testing.T) {
		r := cutEmbedded(t, bin, map[string]string{"NATS_EMBEDDED_SYNC_ALWAYS": "false"}, cuts)
		if r.lost == 0 {
			t.Errorf("lazy control lost nothing (%s): the power cuts do not bite, the harness is broken", r)
		}
	})
}

// cutReport is what a series of power cuts did to the events acknowledged before them.
type cutReport struct {
	cuts, acked, lost, dups, corrupt int
	perCut                           []int // acknowledged events lost, by cut
	undone                           powercut.Undone
}

func (r cutReport) String() string {
	return fmt.Sprintf("%d cuts, %d acknowledged, %d lost %v, %d stored twice, %d corrupt; undone at the cuts: %d writes, %d bytes",
		r.cuts, r.acked, r.lost, r.perCut, r.dups, r.corrupt, r.undone.Writes, r.undone.Bytes)
}

// cutEmbedded runs cuts power cuts under a bridge with settings and reads the stream once at
// the end.
func cutEmbedded(t *testing.T, bin string, settings map[string]string, cuts int) cutReport {
	fs := powercut.New(t)
	env := map[string]string{
		"NATS_EMBEDDED_DIR":      filepath.Join(fs.Dir(), "store"),
		"BRIDGE_PUBLISH_TIMEOUT": "2s",
	}
	maps.Copy(env, settings)
	r := cutReport{cuts: cuts}
	acked := map[string]int{} // id: the cut it was acknowledged before
	for cut := range cuts {
		b := startProc(t, bin, env)
		l := startLoad(b.URL, 32, fmt.Sprintf("c%d", cut))
		l.waitAcked(t, 50)
		time.Sleep(time.Duration(500+rand.IntN(1500)) * time.Millisecond)
		undone, err := fs.Cut(b.Kill)
		if err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		r.undone.Writes += undone.Writes
		r.undone.Bytes += undone.Bytes
		for id := range l.finish() {
			acked[id] = cut
		}
	}
	b := startProc(t, bin, env)
	stored := map[string]int{}
	r.perCut = make([]int, cuts)
	for _, m := range natstest.Messages(t, streamJS(t, b.NATS), "AYRSHARE") {
		id := m.Header.Get(cenats.HeaderID)
		stored[id]++
		if !bytes.Equal(m.Data, loadBody(id)) {
			r.corrupt++
		}
	}
	for id, cut := range acked {
		switch stored[id] {
		case 0:
			r.lost++
			r.perCut[cut]++
		case 1:
		default:
			r.dups++
		}
	}
	r.acked = len(acked)
	if err := b.Stop(10 * time.Second); err != nil {
		t.Errorf("bridge stop: %v", err)
	}
	t.Logf("%v: %s", settings, r)
	return r
}
