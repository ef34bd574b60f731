package ingest

import (
	"context"
	"os"
	"syscall"
	"time"
)

// DefaultReloadInterval is how often mounted secrets and certificates are checked for changes
// unless the caller says otherwise: within the few seconds an operator waits after an update.
const DefaultReloadInterval = 2 * time.Second

// fileStamp tells whether a file changed without reading it. It is taken through symlinks, so
// Kubernetes' atomic swap of a mounted Secret's ..data link changes it even when the new file
// has the same size and modification time.
type fileStamp struct {
	dev, ino uint64
	size     int64
	mtime    int64
}

// stampOf returns path's stamp, following symlinks, and whether it is a regular file.
func stampOf(path string) (fileStamp, bool, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, false, err
	}
	s := fileStamp{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.dev, s.ino = uint64(st.Dev), st.Ino
	}
	return s, fi.Mode().IsRegular(), nil
}

// poll calls check every interval until ctx ends. Polling rather than inotify: a mounted
// Secret changes through symlinks in a parent directory, which file watches miss, and one
// stat per file every few seconds costs nothing.
func poll(ctx context.Context, every time.Duration, check func()) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			check()
		}
	}
}
