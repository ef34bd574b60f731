//go:build !linux

package powercut

import "errors"

// FS is a loopback mount whose unsynced changes a Cut throws away.
type FS struct{}

var errNotLinux = errors.New("powercut: power-cut tests need Linux")

// Available reports why power-cut tests cannot run here (not root, no /dev/fuse), or nil.
func Available() error { return errNotLinux }

// Mount serves backing at mountpoint (both existing directories) until Close.
func Mount(backing, mountpoint string, opts Options) (*FS, error) { return nil, errNotLinux }

// Cut simulates a power cut; see the Linux implementation.
func (f *FS) Cut(kill func()) (Undone, error) { return Undone{}, errNotLinux }

// Stats are counters since Mount.
func (f *FS) Stats() Stats { return Stats{} }

// Dir is the mountpoint.
func (f *FS) Dir() string { return "" }

// Close unmounts.
func (f *FS) Close() error { return nil }
