// Package volumetest lays out directories the way kubelet mounts and updates a Kubernetes
// Secret volume, for tests of what reads mounted secrets and certificates.
package volumetest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Volume is a directory whose entries are links through ..data to a timestamped directory,
// which every update replaces in one rename of ..data, as kubelet's atomic writer does.
type Volume struct {
	Dir  string
	gen  int
	prev string // the generation ..data points to
}

// New returns an empty volume in a directory the test removes.
func New(t testing.TB) *Volume {
	return &Volume{Dir: t.TempDir()}
}

// Path returns where a key of the volume is read.
func (v *Volume) Path(key string) string { return filepath.Join(v.Dir, key) }

// Update makes files the volume's whole content.
func (v *Volume) Update(t testing.TB, files map[string]string) {
	t.Helper()
	v.UpdateWith(t, func(dir string) {
		for name, content := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// UpdateWith lets write fill a new generation's directory, then swaps it in: ..data points to
// it, each of its files gets a link, links of keys it lacks go and the old generation goes.
func (v *Volume) UpdateWith(t testing.TB, write func(dir string)) {
	t.Helper()
	v.gen++
	gen := fmt.Sprintf("..2026_12_03_10_00_%02d.%d", v.gen%60, v.gen)
	dir := filepath.Join(v.Dir, gen)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write(dir)
	tmp := filepath.Join(v.Dir, "..data_tmp")
	if err := os.Symlink(gen, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(v.Dir, "..data")); err != nil {
		t.Fatal(err)
	}
	keys, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, k := range keys {
		want[k.Name()] = true
		if _, err := os.Lstat(v.Path(k.Name())); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", k.Name()), v.Path(k.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	entries, err := os.ReadDir(v.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if name := e.Name(); name[0] != '.' && !want[name] {
			if err := os.Remove(v.Path(name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if v.prev != "" {
		if err := os.RemoveAll(filepath.Join(v.Dir, v.prev)); err != nil {
			t.Fatal(err)
		}
	}
	v.prev = gen
}
