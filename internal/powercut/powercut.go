// Package powercut lets a test cut the power under a real process: the process keeps its data
// on a FUSE file system served by the test, which can throw away every change that no fsync
// covered, as a power cut throws away what was still in the page cache.
//
// The file system is a loopback over a backing directory. Writes, truncations and fallocates
// reach the backing files at once, and each file keeps an undo log of them since its last
// fsync or fdatasync; Cut replays those logs backwards. Renames, unlinks, links and mkdirs
// are durable at once (with Options.Strict, the creation of a file never fsynced is not).
package powercut

import (
	"os"
	"path/filepath"
	"testing"
)

// Options tunes how much a cut takes away.
type Options struct {
	// Strict also undoes the creation of regular files that were never fsynced, so they vanish
	// after a cut instead of surviving empty, as a file whose directory entry never reached
	// the disk does.
	Strict bool
}

// Undone tells what a cut threw away, so a test can tell a cut that lost data from one that
// had nothing to lose.
type Undone struct {
	Files   int   // files that lost changes or, with Strict, vanished
	Writes  int   // write, truncate and fallocate requests undone
	Bytes   int64 // bytes those requests wrote, cut off or allocated
	Removed int   // files that vanished because Strict undid their creation
}

// Stats counts requests since Mount so a test can prove the layer sees the traffic it judges.
type Stats struct {
	Writes       int64 // FUSE write requests served, of at most 128 KiB each: a large write(2) makes several
	Fsyncs       int64 // fsync and fdatasync requests on files
	SyncedWrites int64 // writes through handles opened with O_SYNC or O_DSYNC
}

// New mounts a fresh file system for t over directories t removes, or skips t where power-cut
// tests cannot run.
func New(t testing.TB) *FS {
	t.Helper()
	return NewWith(t, Options{})
}

// NewWith is New for a test that needs Options.
func NewWith(t testing.TB, opts Options) *FS {
	t.Helper()
	if err := Available(); err != nil {
		t.Skipf("power-cut tests cannot run here: %v", err)
	}
	root := t.TempDir()
	backing, mountpoint := filepath.Join(root, "backing"), filepath.Join(root, "mnt")
	for _, d := range []string{backing, mountpoint} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f, err := Mount(backing, mountpoint, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Error(err)
		}
	})
	return f
}
