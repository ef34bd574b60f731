//go:build linux

package powercut

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// fileKey names a backing inode, so a log follows its file through renames and hard links.
type fileKey struct{ dev, ino uint64 }

func keyOf(st *syscall.Stat_t) fileKey { return fileKey{dev: uint64(st.Dev), ino: st.Ino} }

// fileLog is what a cut would undo in one file: its changes since its last fsync.
type fileLog struct {
	mu sync.Mutex
	// dead is set once the log left FS.logs (an fsync, a cut, an unlink); a writer that found it
	// there before must look again, or its change would be recorded nowhere.
	dead bool
	// f is opened O_RDWR on the inode: it reads the bytes a change overwrites and writes them
	// back at the cut whatever mode the writer opened with, and it pins the inode so its
	// number cannot be given to another file while the key is in use.
	f *os.File
	// created marks, for Strict, a file created through the mount and not fsynced since.
	created bool
	entries []undoEntry
}

// undoEntry reverses one change: put old back at off, then cut the file to oldSize.
type undoEntry struct {
	off     int64
	old     []byte
	oldSize int64
	bytes   int64 // what Undone.Bytes counts for this change
}

// save records the current content of [off, off+n) (as far as the file reaches) and size,
// before a change that may alter them.
func (l *fileLog) save(off, n, bytes int64) error {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(l.f.Fd()), &st); err != nil {
		return err
	}
	e := undoEntry{off: off, oldSize: st.Size, bytes: bytes}
	if end := min(off+n, st.Size); off < end {
		e.old = make([]byte, end-off)
		if _, err := l.f.ReadAt(e.old, off); err != nil && err != io.EOF {
			return err
		}
	}
	l.entries = append(l.entries, e)
	return nil
}

// size is the file's current size.
func (l *fileLog) size() (int64, error) {
	var st syscall.Stat_t
	err := syscall.Fstat(int(l.f.Fd()), &st)
	return st.Size, err
}

// retire takes the log out of service; the caller holds l.mu and has taken it out of FS.logs.
func (l *fileLog) retire() {
	l.dead = true
	l.entries = nil
	l.f.Close()
}

// change runs apply on the file keyed key with its log held, so the order of the log is the
// order in which the backing file changed. open is called only if the file has no log yet,
// for an O_RDWR descriptor on the inode that the new log keeps.
func (f *FS) change(key fileKey, open func() (*os.File, error), apply func(l *fileLog) syscall.Errno) syscall.Errno {
	for {
		f.logMu.Lock()
		l := f.logs[key]
		if l == nil {
			fd, err := open()
			if err != nil {
				f.logMu.Unlock()
				return errnoOf(err)
			}
			l = &fileLog{f: fd}
			f.logs[key] = l
		}
		f.logMu.Unlock()
		l.mu.Lock()
		if l.dead {
			l.mu.Unlock()
			continue
		}
		errno := apply(l)
		l.mu.Unlock()
		return errno
	}
}

// synced drops the log of the file keyed key: everything it held is now durable.
func (f *FS) synced(key fileKey) {
	f.logMu.Lock()
	l := f.logs[key]
	delete(f.logs, key)
	f.logMu.Unlock()
	if l != nil {
		l.mu.Lock()
		if !l.dead {
			l.retire()
		}
		l.mu.Unlock()
	}
}

// syncedIn is synced for a caller that holds l.mu.
func (f *FS) syncedIn(key fileKey, l *fileLog) {
	f.logMu.Lock()
	if f.logs[key] == l {
		delete(f.logs, key)
	}
	f.logMu.Unlock()
	l.retire()
}

// undo replays every log backwards on the backing files and forgets them.
func (f *FS) undo() (Undone, error) {
	f.logMu.Lock()
	logs := f.logs
	f.logs = make(map[fileKey]*fileLog)
	f.logMu.Unlock()

	var u Undone
	var errs []error
	doomed := make(map[fileKey]bool)
	for key, l := range logs {
		l.mu.Lock()
		if !l.dead {
			touched, err := l.replay(&u)
			if err != nil {
				errs = append(errs, err)
			}
			if touched {
				u.Files++
			}
			if l.created && f.opts.Strict {
				doomed[key] = !touched
			}
			l.retire()
		}
		l.mu.Unlock()
	}
	if len(doomed) > 0 {
		if err := f.remove(doomed, &u); err != nil {
			errs = append(errs, err)
		}
	}
	return u, errors.Join(errs...)
}

// replay undoes l's entries, newest first, and tells whether the file is still linked and had
// any. A file no name reaches any more is left alone: no one will read it.
func (l *fileLog) replay(u *Undone) (bool, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(l.f.Fd()), &st); err != nil {
		return false, fmt.Errorf("powercut: undo %s: %w", l.f.Name(), err)
	}
	if st.Nlink == 0 || len(l.entries) == 0 {
		return false, nil
	}
	for i := len(l.entries) - 1; i >= 0; i-- {
		e := l.entries[i]
		if len(e.old) > 0 {
			if _, err := l.f.WriteAt(e.old, e.off); err != nil {
				return true, fmt.Errorf("powercut: undo: %w", err)
			}
		}
		if err := l.f.Truncate(e.oldSize); err != nil {
			return true, fmt.Errorf("powercut: undo: %w", err)
		}
		u.Writes++
		u.Bytes += e.bytes
	}
	return true, nil
}

// remove unlinks every name of the doomed inodes (the value says whether Files must still
// count it); only a walk finds the names of an inode.
func (f *FS) remove(doomed map[fileKey]bool, u *Undone) error {
	removed := make(map[fileKey]bool)
	err := filepath.WalkDir(f.backing, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil // a directory that vanished under the walk holds nothing of ours
		}
		var st syscall.Stat_t
		if syscall.Lstat(p, &st) != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
			return nil
		}
		k := keyOf(&st)
		count, ok := doomed[k]
		if !ok {
			return nil
		}
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("powercut: undo creation: %w", err)
		}
		if !removed[k] {
			removed[k] = true
			u.Removed++
			if count {
				u.Files++
			}
		}
		return nil
	})
	return err
}

// errnoOf turns an error from the os or syscall packages into the errno FUSE answers with.
func errnoOf(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return syscall.EIO
}
