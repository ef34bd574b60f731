//go:build linux

package powercut

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"golang.org/x/sys/unix"
)

func writeFile(t *testing.T, p string, flag int, data []byte, sync bool) {
	t.Helper()
	f, err := os.OpenFile(p, flag, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

const (
	create = os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	apnd   = os.O_WRONLY | os.O_APPEND
)

// cut cuts the power with no process to kill and fails t on an error.
func cut(t *testing.T, f *FS) Undone {
	t.Helper()
	u, err := f.Cut(nil)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// wantFile checks p's content through the mount and in the backing dir.
func wantFile(t *testing.T, f *FS, name, want string) {
	t.Helper()
	for _, dir := range []string{f.Dir(), f.backing} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%s: %v", dir, err)
		} else if string(got) != want {
			t.Errorf("%s/%s = %q, want %q", dir, name, got, want)
		}
	}
}

func wantGone(t *testing.T, f *FS, name string) {
	t.Helper()
	for _, dir := range []string{f.Dir(), f.backing} {
		if _, err := os.Lstat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s/%s: err %v, want it gone", dir, name, err)
		}
	}
}

func TestCutUndoesWhatNoFsyncCovered(t *testing.T) {
	for _, tc := range []struct {
		name  string
		do    func(t *testing.T, p string)
		file  string // the file to check, "a" unless set
		want  string
		kept  bool // nothing to undo
		check func(t *testing.T, f *FS)
	}{
		{name: "new file without fsync is left empty", want: "", do: func(t *testing.T, p string) {
			writeFile(t, p, create, []byte("hello"), false)
		}},
		{name: "fsync keeps", want: "hello", kept: true, do: func(t *testing.T, p string) {
			writeFile(t, p, create, []byte("hello"), true)
		}},
		{name: "fdatasync keeps", want: "hello", kept: true, do: func(t *testing.T, p string) {
			f, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteString("hello"); err != nil {
				t.Fatal(err)
			}
			if err := syscall.Fdatasync(int(f.Fd())); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "O_SYNC keeps", want: "hello", kept: true, do: func(t *testing.T, p string) {
			writeFile(t, p, create|os.O_SYNC, []byte("hello"), false)
		}},
		{name: "O_DSYNC keeps", want: "hello", kept: true, do: func(t *testing.T, p string) {
			writeFile(t, p, create|syscall.O_DSYNC, []byte("hello"), false)
		}},
		{name: "O_SYNC write covers earlier writes", want: "hello world", kept: true, do: func(t *testing.T, p string) {
			writeFile(t, p, create, []byte("hello"), false)
			writeFile(t, p, apnd|os.O_SYNC, []byte(" world"), false)
		}},
		{name: "fsync on another handle keeps", want: "hello", kept: true, do: func(t *testing.T, p string) {
			writeFile(t, p, create, []byte("hello"), false)
			r, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if err := r.Sync(); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "rewrite in place gets the old bytes back", want: "0123456789", do: func(t *testing.T, p string) {
			writeFile(t, p, create, []byte("0123456789"), true)
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte("abc"), 3); err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt([]byte("XYZ"), 8); err != nil { // overwrites and extends
				t.Fatal(err)
			}
		}},
		{name: "append is truncated away", want: "hello", do: func(t *testing.T, p string) {
			writeFile(t, p, create, []byte("hello"), true)
			writeFile(t, p, apnd, []byte(" world"), false)
		}},
		{name: "partially synced file keeps the synced prefix", want: "synced", do: func(t *testing.T, p string) {
			f, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for _, s := range []string{"syn", "ced"} {
				if _, err := f.WriteString(s); err != nil {
					t.Fatal(err)
				}
			}
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteString(" and more"); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "truncate after fsync is undone", want: "hello world", do: func(t *testing.T, p string) {
			writeFile(t, p, create, []byte("hello world"), true)
			if err := os.Truncate(p, 5); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "ftruncate after fsync is undone", want: "hello world", do: func(t *testing.T, p string) {
			writeFile(t, p, create, []byte("hello world"), true)
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := f.Truncate(0); err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteString("HELLO WORLD, longer"); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "growing truncate is undone", want: "abc", do: func(t *testing.T, p string) {
			writeFile(t, p, create, []byte("abc"), true)
			if err := os.Truncate(p, 1<<20); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "O_TRUNC after fsync is undone", want: "hello world", do: func(t *testing.T, p string) {
			writeFile(t, p, create, []byte("hello world"), true)
			writeFile(t, p, create, []byte("bye"), false)
		}},
		{name: "punched hole after fsync is filled again", want: "0123456789", do: func(t *testing.T, p string) {
			writeFile(t, p, create, []byte("0123456789"), true)
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			err = unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 2, 5)
			if errors.Is(err, syscall.EOPNOTSUPP) {
				t.Skip("fallocate punch hole not supported here")
			} else if err != nil {
				t.Fatal(err)
			}
		}},
		{name: "copy_file_range is logged", want: "", do: func(t *testing.T, p string) {
			src := filepath.Join(filepath.Dir(p), "src")
			writeFile(t, src, create, bytes.Repeat([]byte("x"), 300000), true)
			in, err := os.Open(src)
			if err != nil {
				t.Fatal(err)
			}
			defer in.Close()
			out, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			if _, err := io.Copy(out, in); err != nil { // copy_file_range, which must fall back to writes
				t.Fatal(err)
			}
		}},
		{name: "rename keeps the log", file: "b", want: "AAAA", do: func(t *testing.T, p string) {
			writeFile(t, p, create, []byte("AAAA"), true)
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt([]byte("BB"), 1); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(p, filepath.Join(filepath.Dir(p), "b")); err != nil {
				t.Fatal(err)
			}
		}, check: func(t *testing.T, f *FS) { wantGone(t, f, "a") }},
		{name: "renamed new file is left empty", file: "b", want: "", do: func(t *testing.T, p string) {
			writeFile(t, p, create, []byte("hello"), false)
			if err := os.Rename(p, filepath.Join(filepath.Dir(p), "b")); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "unlinked file stays gone", kept: true, do: func(t *testing.T, p string) {
			writeFile(t, p, create, []byte("hello"), false)
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}, check: func(t *testing.T, f *FS) { wantGone(t, f, "a") }},
		{name: "file replaced by rename stays replaced", file: "b", want: "", do: func(t *testing.T, p string) {
			b := filepath.Join(filepath.Dir(p), "b")
			writeFile(t, b, create, []byte("old"), false)
			writeFile(t, p, create, []byte("new"), false)
			if err := os.Rename(p, b); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := New(t)
			tc.do(t, filepath.Join(f.Dir(), "a"))
			u := cut(t, f)
			if tc.kept != (u.Writes == 0) {
				t.Errorf("undone %+v, want undone writes: %v", u, !tc.kept)
			}
			if tc.check != nil {
				tc.check(t, f)
			}
			if tc.file != "" || tc.check == nil {
				name := tc.file
				if name == "" {
					name = "a"
				}
				wantFile(t, f, name, tc.want)
			}
		})
	}
}

func TestStrictUndoesCreation(t *testing.T) {
	f := NewWith(t, Options{Strict: true})
	d := f.Dir()
	writeFile(t, filepath.Join(d, "unsynced"), create, []byte("x"), false)
	writeFile(t, filepath.Join(d, "empty"), create, nil, false)
	writeFile(t, filepath.Join(d, "synced"), create, []byte("kept"), true)
	writeFile(t, filepath.Join(d, "osync"), create|os.O_SYNC, []byte("kept"), false)
	writeFile(t, filepath.Join(d, "synced"), apnd, []byte(" not this"), false)
	// The replace-by-rename of a file never fsynced, as nats-server writes its metadata
	// unless it syncs always.
	writeFile(t, filepath.Join(d, "meta.tmp"), create, []byte("meta"), false)
	if err := os.Rename(filepath.Join(d, "meta.tmp"), filepath.Join(d, "meta")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(d, "unsynced"), filepath.Join(d, "link")); err != nil {
		t.Fatal(err)
	}
	u := cut(t, f)
	if u.Removed != 3 || u.Files != 4 {
		t.Errorf("undone %+v, want 3 files removed (unsynced, empty, meta) and 4 touched", u)
	}
	for _, name := range []string{"unsynced", "link", "empty", "meta", "meta.tmp"} {
		wantGone(t, f, name)
	}
	wantFile(t, f, "synced", "kept")
	wantFile(t, f, "osync", "kept")
}

func TestLayerSeesWrites(t *testing.T) {
	if _, ok := any(&fileHandle{}).(fs.FilePassthroughFder); ok {
		t.Fatal("fileHandle offers passthrough: the kernel would write to the backing file behind the log")
	}
	f := New(t)
	const n = 50
	before := f.Stats()
	w, err := os.Create(filepath.Join(f.Dir(), "a"))
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		if _, err := w.WriteString("0123456789"); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(f.Dir(), "b"), create|os.O_SYNC, []byte("x"), false)
	after := f.Stats()
	if got := after.Writes - before.Writes; got < n+1 {
		t.Errorf("the layer saw %d writes, want at least %d: do writes bypass it (passthrough, writeback cache)?", got, n+1)
	}
	if got := after.Fsyncs - before.Fsyncs; got < 1 {
		t.Errorf("the layer saw %d fsyncs, want at least 1", got)
	}
	if got := after.SyncedWrites - before.SyncedWrites; got != 1 {
		t.Errorf("the layer saw %d O_SYNC writes, want 1", got)
	}
	if got, err := os.ReadFile(filepath.Join(f.backing, "a")); err != nil || len(got) != 10*n {
		t.Errorf("backing file: %d bytes, %v; want %d bytes", len(got), err, 10*n)
	}
}

func TestCutWithNothingUnsyncedUndoesNothing(t *testing.T) {
	f := New(t)
	if u := cut(t, f); u != (Undone{}) {
		t.Errorf("first cut undid %+v", u)
	}
	d := f.Dir()
	if err := os.MkdirAll(filepath.Join(d, "x/y"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(d, "x/y/a"), create, []byte("hello"), true)
	if err := os.Rename(filepath.Join(d, "x/y/a"), filepath.Join(d, "x/b")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.ReadFile(filepath.Join(d, "x/b")); err != nil {
		t.Fatal(err)
	}
	if u := cut(t, f); u != (Undone{}) {
		t.Errorf("second cut undid %+v", u)
	}
	wantFile(t, f, "x/b", "hello")
}

func TestFrozenDuringKill(t *testing.T) {
	f := New(t)
	writeFile(t, filepath.Join(f.Dir(), "a"), create, []byte("hello"), true)
	u, err := f.Cut(func() {
		if err := os.WriteFile(filepath.Join(f.Dir(), "new"), []byte("x"), 0o644); err == nil {
			t.Error("created a file on a frozen mount")
		}
		if _, err := os.ReadFile(filepath.Join(f.Dir(), "a")); err == nil {
			t.Error("read a file on a frozen mount")
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if u != (Undone{}) {
		t.Errorf("undone %+v, want nothing", u)
	}
	wantGone(t, f, "new")
	wantFile(t, f, "a", "hello")
}

// TestKilledChild cuts the power under a process appending to a file, as a test of a server
// would.
func TestKilledChild(t *testing.T) {
	f := New(t)
	const prefix = "synced\n"
	cmd := exec.Command("sh", "-c", `printf 'synced\n' | dd of="$DIR/f" conv=fsync 2>/dev/null || exit 1
while :; do echo x >> "$DIR/f"; done`)
	cmd.Env = append(os.Environ(), "DIR="+f.Dir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })

	backing := filepath.Join(f.backing, "f")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if st, err := os.Stat(backing); err == nil && st.Size() > int64(len(prefix))+1000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the child wrote too little in 10s")
		}
	}
	u, err := f.Cut(func() {
		cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Error("the child outlived SIGKILL by 10s")
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if u.Files != 1 || u.Writes < 500 {
		t.Errorf("undone %+v, want 1 file and at least 500 writes", u)
	}
	wantFile(t, f, "f", prefix)

	p := filepath.Join(f.Dir(), "after")
	writeFile(t, p, create, []byte("mounted again"), false)
	wantFile(t, f, "after", "mounted again")
}

// TestCutForcesBusyMount has a process the kill misses keep the mount busy: Cut still undoes
// and mounts again, but says the mount was busy, and the server of the old mount stops.
func TestCutForcesBusyMount(t *testing.T) {
	f := New(t)
	writeFile(t, filepath.Join(f.Dir(), "a"), create, []byte("hello"), false)
	cmd := exec.Command("sh", "-c", `exec 3<a; echo ready; exec sleep 60`)
	cmd.Dir = f.Dir()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if _, err := out.Read(make([]byte, 6)); err != nil {
		t.Fatal(err)
	}
	old := f.cur
	u, err := f.Cut(nil)
	if !errors.Is(err, errBusy) || errors.Is(err, errInUse) {
		t.Errorf("Cut: %v, want only %v", err, errBusy)
	}
	select {
	case <-old.served:
	default:
		t.Error("the server of the busy mount still runs")
	}
	if u.Writes != 1 {
		t.Errorf("undone %+v, want the one write", u)
	}
	wantFile(t, f, "a", "")
}

// TestConcurrentWritersAcrossCut has writers race the freeze: each file must end at the size
// it had at its writer's last successful fsync.
func TestConcurrentWritersAcrossCut(t *testing.T) {
	f := New(t)
	const writers = 4
	var synced [writers]atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range writers {
		wg.Go(func() {
			w, err := os.Create(filepath.Join(f.Dir(), string(rune('a'+i))))
			if err != nil {
				t.Error(err)
				return
			}
			defer w.Close()
			<-start
			chunk := bytes.Repeat([]byte{byte('a' + i)}, 100)
			var size int64
			for n := 1; ; n++ {
				if _, err := w.Write(chunk); err != nil {
					return // the cut
				}
				size += int64(len(chunk))
				if n%7 == 0 {
					if w.Sync() != nil {
						return
					}
					synced[i].Store(size)
				}
			}
		})
	}
	close(start)
	time.Sleep(200 * time.Millisecond)
	_, err := f.Cut(func() {
		stopped := make(chan struct{})
		go func() { wg.Wait(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(10 * time.Second):
			t.Error("writers still writing 10s into the cut") // the forced unmount will stop them
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range writers {
		name := string(rune('a' + i))
		st, err := os.Stat(filepath.Join(f.Dir(), name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() != synced[i].Load() || st.Size() == 0 {
			t.Errorf("%s: %d bytes after the cut, %d at the last fsync", name, st.Size(), synced[i].Load())
		}
	}
}

// TestNodeOverridesLoopback guards the freeze: an fs.LoopbackNode method that node merely
// promotes would serve requests after a cut, and a go-fuse upgrade may add one.
func TestNodeOverridesLoopback(t *testing.T) {
	lb, inode, ours := reflect.TypeOf(&fs.LoopbackNode{}), reflect.TypeOf(&fs.Inode{}), reflect.TypeOf(&node{})
	for i := range lb.NumMethod() {
		name := lb.Method(i).Name
		if _, ok := inode.MethodByName(name); ok {
			continue
		}
		m, _ := ours.MethodByName(name)
		if file, _ := runtime.FuncForPC(m.Func.Pointer()).FileLine(m.Func.Pointer()); file == "<autogenerated>" {
			t.Errorf("node promotes fs.LoopbackNode.%s: override it to refuse requests after a cut", name)
		}
	}
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	if err := Available(); err != nil {
		t.Skip(err)
	}
	before := runtime.NumGoroutine()
	dir := t.TempDir()
	backing, mnt := filepath.Join(dir, "b"), filepath.Join(dir, "m")
	for _, d := range []string{backing, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f, err := Mount(backing, mnt, Options{})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(mnt, "a"), create, []byte("hello"), false)
	if _, err := f.Cut(nil); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(mnt, "a"), create, []byte("hello"), false)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(backing, "a")); err != nil || string(got) != "hello" {
		t.Errorf("backing after Close: %q, %v; want Close to keep unsynced data", got, err)
	}
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > before; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after Close, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
	}
}
