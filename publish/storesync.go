package publish

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// StoreSync makes what a lazy embedded nats-server wrote to its store durable, for many
// acknowledgements at once: nats-server writes every message to its block file before it
// acknowledges it (TestLazyServerWritesBeforeItAcks pins that), so an fsync of the files that
// changed, taken after the acks, covers every one of them. One round of fsyncs runs at a time;
// the callers that arrive meanwhile share the next round, so under load a round covers many
// groups of webhooks, where a server that syncs always fsyncs once per message.
//
// It fsyncs files, not the file system (syncfs): that is what every file system honours,
// FUSE included, and what the power-cut tests can see.
type StoreSync struct {
	dir  string
	reqs chan chan error
	// Only the syncing goroutine touches seen: each file's state at its last fsync.
	seen map[string]synced
	once sync.Once
	done chan struct{}
}

type fileStamp struct {
	size  int64
	mtime time.Time
	ino   uint64
}

// racy is how close to its fsync a file's mtime may be for the fsync to count: a file changed
// again within one tick of the kernel's coarse clock keeps its mtime (and, written in place or
// a directory, its size), so a stamp that recent proves nothing and the file is synced again
// (git's "racy" index entries, the same problem).
const racy = 50 * time.Millisecond

// synced is a file's stamp when it was last fsynced, and when.
type synced struct {
	st fileStamp
	at time.Time
}

// clean reports whether a file with stamp st needs no fsync: it has not changed since prev's.
func (prev synced) clean(st fileStamp) bool {
	return prev.st == st && st.mtime.Before(prev.at.Add(-racy))
}

// NewStoreSync returns a StoreSync for the JetStream store under dir (the embedded server's
// StoreDir); it syncs until ctx ends.
func NewStoreSync(ctx context.Context, dir string) (*StoreSync, error) {
	if dir == "" {
		return nil, errors.New("store sync: empty directory")
	}
	s := &StoreSync{dir: dir, reqs: make(chan chan error, 1024), seen: map[string]synced{}, done: make(chan struct{})}
	go s.run(ctx)
	return s, nil
}

// ErrStoreSyncStopped is returned by Sync once the StoreSync's context ended.
var ErrStoreSyncStopped = errors.New("store sync stopped")

// Sync returns once every write the server made before the call is on disk, or ctx ends.
func (s *StoreSync) Sync(ctx context.Context) error {
	reply := make(chan error, 1)
	select {
	case s.reqs <- reply:
	case <-s.done:
		return ErrStoreSyncStopped
	case <-ctx.Done():
		return fmt.Errorf("store sync: %w", ctx.Err())
	}
	select {
	case err := <-reply:
		return err
	case <-s.done:
		select {
		case err := <-reply: // answered before the syncer stopped
			return err
		default:
			return ErrStoreSyncStopped
		}
	case <-ctx.Done():
		return fmt.Errorf("store sync: %w", ctx.Err())
	}
}

func (s *StoreSync) run(ctx context.Context) {
	defer close(s.done)
	var waiting []chan error
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-s.reqs:
			waiting = append(waiting[:0], r)
		}
		// Everyone queued by now was acknowledged before this round starts.
	more:
		for {
			select {
			case r := <-s.reqs:
				waiting = append(waiting, r)
			default:
				break more
			}
		}
		err := s.syncAll()
		for _, r := range waiting {
			r <- err
		}
		clear(waiting)
	}
}

// syncAll fsyncs every file and directory of the store that changed since its last fsync: new
// and renamed files keep their names only once their directory is synced too.
func (s *StoreSync) syncAll() error {
	var errs []error
	type entry struct {
		path string
		st   fileStamp
	}
	var entries []entry
	// Before any stamp is read: a change after its read shows a later mtime than one older than
	// this by more than a clock tick, so it is caught next round.
	start := time.Now()
	err := filepath.WalkDir(s.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) { // else removed while walking: a compaction, a deleted consumer
				errs = append(errs, err)
			}
			return nil
		}
		if !d.Type().IsRegular() && !d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
			return nil
		}
		st := fileStamp{size: info.Size(), mtime: info.ModTime()}
		if sys, ok := info.Sys().(*syscall.Stat_t); ok {
			st.ino = sys.Ino
		}
		entries = append(entries, entry{path, st})
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	seen := make(map[string]synced, len(entries)) // removed files drop out
	for _, e := range entries {
		prev, ok := s.seen[e.path]
		if ok && prev.clean(e.st) || ok && consumerState(e.path) {
			seen[e.path] = prev
			continue
		}
		if err := fsyncPath(e.path); err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		seen[e.path] = synced{st: e.st, at: start}
	}
	s.seen = seen
	if len(errs) > 0 {
		return fmt.Errorf("%w: store sync: %w", ErrUnavailable, errors.Join(errs...))
	}
	return nil
}

// consumerState reports whether path is a consumer's delivery state (obs/<name>/o.dat), or the
// directory it is renamed into. nats-server rewrites it up to ten times a second; synced with
// every round it doubled the fsyncs of an edge, whose hub consumer moves with every event.
// Losing it to a power cut means redelivery from an earlier point: the hub skips what it has
// (by source sequence and Nats-Msg-Id), and other consumers are at-least-once anyway. It is
// still synced once, when it first appears, so that a new consumer survives.
func consumerState(path string) bool {
	dir, name := filepath.Split(path)
	if name == "o.dat" {
		return filepath.Base(filepath.Dir(dir)) == "obs"
	}
	return filepath.Base(filepath.Dir(path)) == "obs"
}

func fsyncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
