package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Limits of one profile's secrets file: Ayrshare rotates with two secrets at a time, and each
// secret is an HMAC computed for every webhook of the profile.
const (
	maxProfileSecrets   = 4
	maxProfileFileBytes = 64 << 10
)

// refIDName is what a file name must look like to be taken for a profile's refId: Ayrshare's
// are hex or alphanumeric, and anything with a dot or a space is some other file.
var refIDName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

var (
	errNotRefID     = errors.New("file name is not a plausible refId (want 1 to 128 letters, digits, '-' or '_')")
	errNoSecret     = errors.New("file holds no secret")
	errManySecrets  = fmt.Errorf("file holds more than %d secrets", maxProfileSecrets)
	errSecretsLarge = fmt.Errorf("file is larger than %d bytes", maxProfileFileBytes)
)

// ProfileSecrets holds the signing secrets of each Ayrshare profile that has its own, read from
// a directory with one file per refId, one secret per line, and reloaded when it changes. It is
// the shape of a mounted Kubernetes or Docker secret.
type ProfileSecrets struct {
	dir     string
	log     zerolog.Logger
	current atomic.Pointer[map[string]*keyset]

	mu     sync.Mutex            // one reload at a time; guards the fields below
	files  map[string]fileResult // by file name, as last read
	dirErr string                // the directory's last error, so a lasting one is logged once

	profiles prometheus.Gauge
	reloadOK prometheus.Counter
	reloadKO prometheus.Counter
	lastOK   prometheus.Gauge
}

// fileResult is what a file was when last read: its stamp, and why it was refused, if it was.
type fileResult struct {
	stamp fileStamp
	err   error
}

// NewProfileSecrets reads dir, registers the secrets metrics with reg, and fails only when dir
// cannot be read: a broken file is logged, counted and refuses its profile's webhooks.
func NewProfileSecrets(dir string, reg prometheus.Registerer, log zerolog.Logger) (*ProfileSecrets, error) {
	p := &ProfileSecrets{
		dir:   dir,
		log:   log.With().Str("component", "secrets").Str("dir", dir).Logger(),
		files: map[string]fileResult{},
		profiles: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ayrbridge_secrets_profiles",
			Help: "Ayrshare profiles with signing secrets of their own, from AYRSHARE_PROFILE_SECRETS_DIR.",
		}),
		lastOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ayrbridge_secrets_last_reload_successful",
			Help: "1 when every file of AYRSHARE_PROFILE_SECRETS_DIR loaded at the last reload, 0 when one is refused and its profile keeps older secrets.",
		}),
	}
	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ayrbridge_secrets_reloads_total",
		Help: "Reloads of AYRSHARE_PROFILE_SECRETS_DIR that found a change or were asked for (SIGHUP), by result: ok, or error when a file or the directory was refused.",
	}, []string{"result"})
	p.reloadOK, p.reloadKO = reloads.WithLabelValues("ok"), reloads.WithLabelValues("error")
	for _, c := range []prometheus.Collector{p.profiles, p.lastOK, reloads} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	empty := map[string]*keyset{}
	p.current.Store(&empty)
	if _, err := os.ReadDir(dir); err != nil {
		return nil, fmt.Errorf("profile secrets: %w", err)
	}
	_ = p.reload(true, true) // what failed is logged and counted; the rest serves
	return p, nil
}

// keys returns refID's own keyset, or nil when it has none.
func (p *ProfileSecrets) keys(refID string) *keyset {
	return (*p.current.Load())[refID]
}

// Len returns the number of profiles with secrets of their own.
func (p *ProfileSecrets) Len() int {
	n := 0
	for _, ks := range *p.current.Load() {
		if len(ks.macs) > 0 {
			n++
		}
	}
	return n
}

// Reload reads every file of the directory again, as on SIGHUP. A file that cannot be used
// keeps its profile's previous secrets; the error reports every such file.
func (p *ProfileSecrets) Reload() error { return p.reload(true, false) }

// Watch reloads the files that changed every interval until ctx ends.
func (p *ProfileSecrets) Watch(ctx context.Context, every time.Duration) {
	poll(ctx, every, func() { _ = p.reload(false, false) })
}

// reload rereads the files whose stamp changed, or all of them when force is set, and swaps in
// the result. Nothing is logged or counted when nothing changed.
func (p *ProfileSecrets) reload(force, first bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	entries, err := os.ReadDir(p.dir)
	if err != nil {
		err = fmt.Errorf("profile secrets: %w", err)
		if force || err.Error() != p.dirErr {
			p.dirErr = err.Error()
			p.log.Error().Err(err).Msg("profile secrets directory unreadable: keeping every profile's secrets")
			p.counted(false)
		}
		return err
	}
	p.dirErr = ""
	cur := *p.current.Load()
	next := make(map[string]*keyset, len(cur))
	files := make(map[string]fileResult, len(entries))
	var errs []error
	changed, added, updated := force, 0, 0
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue // hidden files, and Kubernetes' ..data link and timestamped directories
		}
		path := filepath.Join(p.dir, name)
		stamp, regular, err := stampOf(path)
		if err == nil && !regular {
			continue
		}
		if err == nil && !refIDName.MatchString(name) {
			err = errNotRefID
		}
		prev, known := p.files[name]
		if err == nil && known && prev.stamp == stamp && !force {
			files[name] = prev
			if ks, ok := cur[name]; ok {
				next[name] = ks
			}
			if prev.err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, prev.err))
			}
			continue
		}
		var ks *keyset
		if err == nil {
			ks, err = readProfile(path)
		}
		if err != nil {
			files[name] = fileResult{stamp: stamp, err: err}
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			if known && prev.err != nil && prev.stamp == stamp && !force {
				if old, ok := cur[name]; ok {
					next[name] = old
				}
				continue // still broken the same way: logged already
			}
			changed = true
			old, had := cur[name]
			if !had && refIDName.MatchString(name) {
				// A profile whose file exists has its own secrets, even when they cannot be read:
				// its webhooks must not fall back to the Primary Profile's.
				old = newKeyset(nil)
			}
			if old != nil {
				next[name] = old
			}
			p.log.Error().Err(err).Str("file", name).Bool("kept_previous", had && len(old.macs) > 0).
				Msg("profile secrets file refused")
			continue
		}
		files[name] = fileResult{stamp: stamp}
		next[name] = ks
		if _, had := cur[name]; had {
			updated++
		} else {
			added++
		}
		changed = true
		if !first {
			p.log.Info().Str("ref_id", name).Int("secrets", len(ks.macs)).Msg("profile secrets updated")
		}
	}
	removed := 0
	for name := range p.files {
		if _, ok := files[name]; ok {
			continue
		}
		changed = true // a broken file that went away changes the result too
		if _, ok := cur[name]; ok {
			removed++
			p.log.Info().Str("ref_id", name).Msg("profile secrets removed: its webhooks verify against AYRSHARE_WEBHOOK_SECRETS")
		}
	}
	p.files = files
	p.current.Store(&next)
	err = errors.Join(errs...)
	if changed {
		p.counted(err == nil)
		p.profiles.Set(float64(p.Len()))
		msg := "profile secrets reloaded"
		if first {
			msg = "profile secrets loaded"
		}
		p.log.Info().Int("profiles", p.Len()).Int("added", added).Int("updated", updated).Int("removed", removed).
			Int("refused", len(errs)).Msg(msg)
	}
	return err
}

func (p *ProfileSecrets) counted(ok bool) {
	if ok {
		p.reloadOK.Inc()
		p.lastOK.Set(1)
		return
	}
	p.reloadKO.Inc()
	p.lastOK.Set(0)
}

// readProfile reads one profile's file: its non-blank lines, trimmed, are its secrets.
func readProfile(path string) (*keyset, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxProfileFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxProfileFileBytes {
		return nil, errSecretsLarge
	}
	var secrets [][]byte
	for line := range bytes.Lines(b) {
		if line = bytes.TrimSpace(line); len(line) > 0 {
			secrets = append(secrets, line)
		}
	}
	switch {
	case len(secrets) == 0:
		return nil, errNoSecret
	case len(secrets) > maxProfileSecrets:
		return nil, errManySecrets
	}
	return newKeyset(secrets), nil
}
