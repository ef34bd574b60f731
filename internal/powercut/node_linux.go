//go:build linux

package powercut

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// node is a loopback node that refuses everything once its mount is frozen and logs what
// it changes in files. It overrides every method of fs.LoopbackNode: a promoted one would
// reach the backing dir past the freeze (TestNodeOverridesLoopback keeps it so).
type node struct {
	*fs.LoopbackNode
	m *mount
}

var (
	_ fs.NodeWrapChilder = (*node)(nil)
	_ fs.NodeSetattrer   = (*node)(nil)
	_ fs.NodeCreater     = (*node)(nil)
	_ fs.NodeOpener      = (*node)(nil)
)

// WrapChild makes every node the loopback creates one of ours.
func (n *node) WrapChild(ctx context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	return &node{LoopbackNode: ops.(*fs.LoopbackNode), m: n.m}
}

// path is the node's backing path, as the loopback computes it.
func (n *node) path() string {
	return filepath.Join(n.RootData.Path, n.Path(n.RootData.RootNode.EmbeddedInode()))
}

func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	if !n.m.live() {
		return syscall.EIO
	}
	return n.LoopbackNode.Statfs(ctx, out)
}

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if !n.m.live() {
		return nil, syscall.EIO
	}
	return n.LoopbackNode.Lookup(ctx, name, out)
}

func (n *node) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if !n.m.live() {
		return syscall.EIO
	}
	return n.LoopbackNode.Getattr(ctx, inner(f), out)
}

func (n *node) Statx(ctx context.Context, f fs.FileHandle, flags uint32, mask uint32, out *fuse.StatxOut) syscall.Errno {
	if !n.m.live() {
		return syscall.EIO
	}
	return n.LoopbackNode.Statx(ctx, inner(f), flags, mask, out)
}

func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if !n.m.live() {
		return 0, syscall.EIO
	}
	return n.LoopbackNode.Getxattr(ctx, attr, dest)
}

func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	if !n.m.live() {
		return 0, syscall.EIO
	}
	return n.LoopbackNode.Listxattr(ctx, dest)
}

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	if !n.m.live() {
		return nil, syscall.EIO
	}
	return n.LoopbackNode.Readlink(ctx)
}

func (n *node) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	if !n.m.live() {
		return nil, syscall.EIO
	}
	return n.LoopbackNode.Readdir(ctx)
}

func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if !n.m.live() {
		return nil, 0, syscall.EIO
	}
	fh, fuseFlags, errno := n.LoopbackNode.OpendirHandle(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	return &dirHandle{m: n.m, ds: fh}, fuseFlags, 0
}

// CopyFileRange says ENOSYS, so the kernel stops asking and copies with writes, which are
// logged; the loopback would copy between backing files behind the log's back.
func (n *node) CopyFileRange(ctx context.Context, fhIn fs.FileHandle, offIn uint64, out *fs.Inode, fhOut fs.FileHandle, offOut uint64, size uint64, flags uint64) (uint32, syscall.Errno) {
	return 0, syscall.ENOSYS
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_TRUNC != 0 {
		// The kernel truncates with SETATTR unless the server claims atomic O_TRUNC, which
		// go-fuse does not; this keeps the truncation logged should that change.
		if !n.m.enter() {
			return nil, 0, syscall.EIO
		}
		defer n.m.leave()
		if errno := n.m.fs.truncatePath(n.path(), 0); errno != 0 && errno != syscall.ENOENT {
			return nil, 0, errno
		}
	} else if !n.m.live() {
		return nil, 0, syscall.EIO
	}
	fh, fuseFlags, errno := n.LoopbackNode.Open(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	h, errno := n.m.wrap(ctx, fh, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	return h, fuseFlags, 0
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if !n.m.enter() {
		return nil, nil, 0, syscall.EIO
	}
	defer n.m.leave()
	p := filepath.Join(n.path(), name)
	// The kernel creates only names it believes absent, but its belief may be stale.
	var st syscall.Stat_t
	existed := syscall.Lstat(p, &st) == nil
	if existed && flags&syscall.O_TRUNC != 0 {
		if errno := n.m.fs.truncatePath(p, 0); errno != 0 && errno != syscall.ENOENT {
			return nil, nil, 0, errno
		}
	}
	ch, fh, fuseFlags, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	h, errno := n.m.wrap(ctx, fh, flags)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	if !existed {
		n.m.fs.created(h.key, h.reopen)
	}
	return ch, h, fuseFlags, 0
}

func (n *node) Tmpfile(ctx context.Context, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if !n.m.enter() {
		return nil, nil, 0, syscall.EIO
	}
	defer n.m.leave()
	ch, fh, fuseFlags, errno := n.LoopbackNode.Tmpfile(ctx, flags, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	h, errno := n.m.wrap(ctx, fh, flags)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	n.m.fs.created(h.key, h.reopen)
	return ch, h, fuseFlags, 0
}

func (n *node) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if !n.m.enter() {
		return nil, syscall.EIO
	}
	defer n.m.leave()
	ch, errno := n.LoopbackNode.Mknod(ctx, name, mode, rdev, out)
	if errno == 0 && mode&syscall.S_IFMT == syscall.S_IFREG && n.m.fs.opts.Strict {
		if f, err := openRW(filepath.Join(n.path(), name)); err == nil {
			key, kept := fileKeyOf(f), false
			n.m.fs.created(key, func() (*os.File, error) { kept = true; return f, nil })
			if !kept {
				f.Close()
			}
		}
	}
	return ch, errno
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if !n.m.enter() {
		return nil, syscall.EIO
	}
	defer n.m.leave()
	return n.LoopbackNode.Mkdir(ctx, name, mode, out)
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	if !n.m.enter() {
		return syscall.EIO
	}
	defer n.m.leave()
	return n.LoopbackNode.Rmdir(ctx, name)
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	if !n.m.enter() {
		return syscall.EIO
	}
	defer n.m.leave()
	p := filepath.Join(n.path(), name)
	var st syscall.Stat_t
	known := syscall.Lstat(p, &st) == nil
	errno := n.LoopbackNode.Unlink(ctx, name)
	if errno == 0 && known {
		n.m.fs.unlinked(&st)
	}
	return errno
}

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if !n.m.enter() {
		return syscall.EIO
	}
	defer n.m.leave()
	var st syscall.Stat_t
	known := false
	if np, ok := newParent.(*node); ok && flags&unix.RENAME_EXCHANGE == 0 {
		known = syscall.Lstat(filepath.Join(np.path(), newName), &st) == nil
	}
	var src syscall.Stat_t
	if known && syscall.Lstat(filepath.Join(n.path(), name), &src) == nil && keyOf(&src) == keyOf(&st) {
		known = false // renaming a link onto a link of the same file changes nothing
	}
	errno := n.LoopbackNode.Rename(ctx, name, newParent, newName, flags)
	if errno == 0 && known {
		n.m.fs.unlinked(&st)
	}
	return errno
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if !n.m.enter() {
		return nil, syscall.EIO
	}
	defer n.m.leave()
	return n.LoopbackNode.Symlink(ctx, target, name, out)
}

func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if !n.m.enter() {
		return nil, syscall.EIO
	}
	defer n.m.leave()
	return n.LoopbackNode.Link(ctx, target, name, out)
}

func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	if !n.m.enter() {
		return syscall.EIO
	}
	defer n.m.leave()
	return n.LoopbackNode.Setxattr(ctx, attr, data, flags)
}

func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	if !n.m.enter() {
		return syscall.EIO
	}
	defer n.m.leave()
	return n.LoopbackNode.Removexattr(ctx, attr)
}

// Setattr does a truncation itself, through the log, and leaves the rest (mode, owner, times)
// to the loopback.
func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if !n.m.enter() {
		return syscall.EIO
	}
	defer n.m.leave()
	if size, ok := in.GetSize(); ok {
		var errno syscall.Errno
		if h, ok := f.(*fileHandle); ok {
			errno = n.m.fs.change(h.key, h.reopen, func(l *fileLog) syscall.Errno { return l.truncate(int64(size)) })
		} else {
			errno = n.m.fs.truncatePath(n.path(), int64(size))
		}
		if errno != 0 {
			return errno
		}
		rest := *in
		rest.Valid &^= fuse.FATTR_SIZE
		in = &rest
	}
	return n.LoopbackNode.Setattr(ctx, inner(f), in, out)
}

// truncatePath truncates the regular file at p, through its log.
func (f *FS) truncatePath(p string, size int64) syscall.Errno {
	fd, err := openRW(p)
	if err != nil {
		return errnoOf(err)
	}
	kept := false
	errno := f.change(fileKeyOf(fd), func() (*os.File, error) { kept = true; return fd, nil },
		func(l *fileLog) syscall.Errno { return l.truncate(size) })
	if !kept {
		fd.Close()
	}
	return errno
}

// truncate sets the file's size, after recording what that cuts off or adds.
func (l *fileLog) truncate(size int64) syscall.Errno {
	old, err := l.size()
	if err != nil {
		return errnoOf(err)
	}
	if size != old {
		if err := l.save(size, max(old-size, 0), abs(old-size)); err != nil {
			return errnoOf(err)
		}
	}
	return errnoOf(l.f.Truncate(size))
}

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}

// created marks a file the mount just created, for Strict to undo its creation.
func (f *FS) created(key fileKey, open func() (*os.File, error)) {
	if !f.opts.Strict {
		return
	}
	f.change(key, open, func(l *fileLog) syscall.Errno { l.created = true; return 0 })
}

// unlinked drops the log of a file whose last name went: it holds nothing a cut must restore,
// and its key could otherwise outlive the inode.
func (f *FS) unlinked(st *syscall.Stat_t) {
	if st.Mode&syscall.S_IFMT == syscall.S_IFREG && st.Nlink <= 1 {
		f.synced(keyOf(st))
	}
}

// openRW opens the regular file at p for the log, without following a final symlink.
func openRW(p string) (*os.File, error) {
	fd, err := os.OpenFile(p, os.O_RDWR|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(fd.Fd()), &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		fd.Close()
		if err == nil {
			err = syscall.EINVAL
		}
		return nil, err
	}
	return fd, nil
}

func fileKeyOf(f *os.File) fileKey {
	var st syscall.Stat_t
	syscall.Fstat(int(f.Fd()), &st) // on a fresh descriptor; a failure leaves a key no file has
	return keyOf(&st)
}

// fileHandle wraps a loopback file handle. It must not implement fs.FilePassthroughFder:
// the kernel would then write to the backing file itself, and the log would see nothing.
type fileHandle struct {
	m    *mount
	lf   *fs.LoopbackFile
	fd   int // lf's descriptor, valid until Release
	key  fileKey
	sync bool // opened O_SYNC or O_DSYNC: every write is durable once it returns
	once sync.Once
}

var (
	_ fs.FileReader    = (*fileHandle)(nil)
	_ fs.FileWriter    = (*fileHandle)(nil)
	_ fs.FileWritever  = (*fileHandle)(nil)
	_ fs.FileFsyncer   = (*fileHandle)(nil)
	_ fs.FileFlusher   = (*fileHandle)(nil)
	_ fs.FileReleaser  = (*fileHandle)(nil)
	_ fs.FileLseeker   = (*fileHandle)(nil)
	_ fs.FileAllocater = (*fileHandle)(nil)
)

// wrap puts a loopback handle the mount just opened in a fileHandle, or releases it.
func (m *mount) wrap(ctx context.Context, fh fs.FileHandle, flags uint32) (*fileHandle, syscall.Errno) {
	lf, ok := fh.(*fs.LoopbackFile)
	if !ok {
		if r, ok := fh.(fs.FileReleaser); ok {
			r.Release(ctx)
		}
		return nil, syscall.EIO
	}
	// PassthroughFd only lends lf's descriptor here; no backing ID is registered with it.
	fd, ok := lf.PassthroughFd()
	var st syscall.Stat_t
	if !ok || syscall.Fstat(fd, &st) != nil {
		lf.Release(ctx)
		return nil, syscall.EIO
	}
	h := &fileHandle{m: m, lf: lf, fd: fd, key: keyOf(&st), sync: flags&(syscall.O_SYNC|syscall.O_DSYNC) != 0}
	m.hmu.Lock()
	m.handles[h] = struct{}{}
	m.hmu.Unlock()
	return h, 0
}

// inner unwraps f for the loopback, which would otherwise call back into our gated methods.
func inner(f fs.FileHandle) fs.FileHandle {
	if h, ok := f.(*fileHandle); ok {
		return h.lf
	}
	return f
}

// reopen opens the handle's inode O_RDWR for its log: the handle itself may be write-only.
func (h *fileHandle) reopen() (*os.File, error) {
	f, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", h.fd), os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	if fileKeyOf(f) != h.key {
		f.Close()
		return nil, syscall.EIO
	}
	return f, nil
}

func (h *fileHandle) Read(ctx context.Context, buf []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if !h.m.live() {
		return nil, syscall.EIO
	}
	return h.lf.Read(ctx, buf, off)
}

func (h *fileHandle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	return h.Writev(ctx, [][]byte{data}, off)
}

// Writev is here so go-fuse need not copy split requests to call Write.
func (h *fileHandle) Writev(ctx context.Context, data [][]byte, off int64) (uint32, syscall.Errno) {
	if !h.m.enter() {
		return 0, syscall.EIO
	}
	defer h.m.leave()
	f := h.m.fs
	f.writes.Add(1)
	var n int64
	for _, b := range data {
		n += int64(len(b))
	}
	var written uint32
	errno := f.change(h.key, h.reopen, func(l *fileLog) syscall.Errno {
		if h.sync {
			f.syncedWrites.Add(1)
		} else if err := l.save(off, n, n); err != nil {
			return errnoOf(err)
		}
		var errno syscall.Errno
		written, errno = h.lf.Writev(ctx, data, off)
		if h.sync && errno == 0 {
			// Like the fdatasync the kernel sends after an O_SYNC write: keeping older entries
			// would let the cut truncate away the bytes this write made durable.
			f.syncedIn(h.key, l)
		}
		return errno
	})
	return written, errno
}

// Fsync makes the file's changes durable by forgetting their undo log; the backing file is not
// synced, as the backing disk never loses power.
func (h *fileHandle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	if !h.m.enter() {
		return syscall.EIO
	}
	defer h.m.leave()
	h.m.fs.fsyncs.Add(1)
	h.m.fs.synced(h.key)
	return 0
}

func (h *fileHandle) Flush(ctx context.Context) syscall.Errno {
	if !h.m.live() {
		return syscall.EIO
	}
	return h.lf.Flush(ctx)
}

// Release closes the backing descriptor even after a cut: that changes nothing on disk, and
// nothing else would close it.
func (h *fileHandle) Release(ctx context.Context) syscall.Errno {
	h.m.hmu.Lock()
	delete(h.m.handles, h)
	h.m.hmu.Unlock()
	h.close()
	if !h.m.live() {
		return syscall.EIO
	}
	return 0
}

func (h *fileHandle) close() {
	h.once.Do(func() { h.lf.Release(context.Background()) })
}

func (h *fileHandle) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	if !h.m.live() {
		return 0, syscall.EIO
	}
	return h.lf.Lseek(ctx, off, whence)
}

// Allocate logs what the mode may change: the size, and for the modes that punch, zero or
// shift, the bytes from off to the end of the file.
func (h *fileHandle) Allocate(ctx context.Context, off uint64, size uint64, mode uint32) syscall.Errno {
	if !h.m.enter() {
		return syscall.EIO
	}
	defer h.m.leave()
	const rewrites = unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_ZERO_RANGE | unix.FALLOC_FL_COLLAPSE_RANGE | unix.FALLOC_FL_INSERT_RANGE
	return h.m.fs.change(h.key, h.reopen, func(l *fileLog) syscall.Errno {
		n := int64(0)
		if mode&rewrites != 0 {
			old, err := l.size()
			if err != nil {
				return errnoOf(err)
			}
			n = max(old-int64(off), 0)
		}
		if err := l.save(int64(off), n, int64(size)); err != nil {
			return errnoOf(err)
		}
		return h.lf.Allocate(ctx, off, size, mode)
	})
}

// dirHandle gates a loopback directory stream.
type dirHandle struct {
	m  *mount
	ds fs.FileHandle
}

var (
	_ fs.FileReaddirenter = (*dirHandle)(nil)
	_ fs.FileSeekdirer    = (*dirHandle)(nil)
	_ fs.FileReleasedirer = (*dirHandle)(nil)
	_ fs.FileFsyncdirer   = (*dirHandle)(nil)
)

func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if !d.m.live() {
		return nil, syscall.EIO
	}
	if r, ok := d.ds.(fs.FileReaddirenter); ok {
		return r.Readdirent(ctx)
	}
	return nil, syscall.ENOTSUP
}

func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if !d.m.live() {
		return syscall.EIO
	}
	if s, ok := d.ds.(fs.FileSeekdirer); ok {
		return s.Seekdir(ctx, off)
	}
	return syscall.ENOTSUP
}

func (d *dirHandle) Releasedir(ctx context.Context, flags uint32) {
	if r, ok := d.ds.(fs.FileReleasedirer); ok {
		r.Releasedir(ctx, flags)
	}
}

// Fsyncdir succeeds without syncing: directory changes are durable here as soon as they are
// made.
func (d *dirHandle) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	if !d.m.live() {
		return syscall.EIO
	}
	return 0
}
