package ingest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ayrbridge/ayrbridge/internal/logtest"
	"github.com/ayrbridge/ayrbridge/internal/tlstest"
	"github.com/ayrbridge/ayrbridge/internal/volumetest"
)

// watchEvery is the tests' reload interval: short, so renewals show up in milliseconds.
const watchEvery = 50 * time.Millisecond

// tlsPair is a CA and the certificate files it issued into a test's directory.
type tlsPair struct {
	ca                *tlstest.CA
	dir               string
	certFile, keyFile string
	leaf              *x509.Certificate // the last certificate issued to the files
}

func newTLSPair(t testing.TB) *tlsPair {
	t.Helper()
	p := &tlsPair{ca: tlstest.NewCA(t), dir: t.TempDir()}
	p.certFile, p.keyFile = filepath.Join(p.dir, "tls.crt"), filepath.Join(p.dir, "tls.key")
	p.renew(t)
	return p
}

// renew issues a new certificate to the pair's files, as a renewal does.
func (p *tlsPair) renew(t testing.TB) *x509.Certificate {
	t.Helper()
	p.leaf = p.ca.Issue(t, p.certFile, p.keyFile)
	return p.leaf
}

// newReloader loads the pair with logs going to the returned buffer.
func newReloader(t testing.TB, p *tlsPair) (*CertReloader, *logtest.Buffer) {
	t.Helper()
	logs := &logtest.Buffer{}
	r, err := NewCertReloader(p.certFile, p.keyFile, zerolog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	return r, logs
}

// watch runs r.Watch until the test ends.
func watch(t testing.TB, r *CertReloader) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Watch(ctx, watchEvery) }()
	t.Cleanup(func() { cancel(); <-done })
}

// startTLSServer serves the bridge's routes over HTTPS with r's certificate, the way the
// bridge does, until the test ends; it returns the address and what was published.
func startTLSServer(t testing.TB, r *CertReloader, limits ServerConfig) (string, *fakePublisher) {
	t.Helper()
	pub := &fakePublisher{}
	h, err := NewHandler(pub, WithMaxBodyBytes(limits.MaxBodyBytes))
	if err != nil {
		t.Fatal(err)
	}
	ready := ReadinessFunc(func(context.Context) error { return nil })
	srv, err := NewServer(Routes(h, ready, nil), limits, nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, srv, limits.MaxConns, r.TLSConfig()), pub
}

// httpsClient trusts only roots (the system's when nil) and keeps its connections alive.
func httpsClient(t testing.TB, roots *x509.CertPool) (*http.Client, *http.Transport) {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, MaxIdleConnsPerHost: 1}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}, tr
}

// handshake opens a new connection to addr with cfg and returns its state.
func handshake(addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState(), nil
}

// servedSerial is the serial of the certificate a new connection to addr is served.
func servedSerial(t testing.TB, addr string, roots *x509.CertPool) *big.Int {
	t.Helper()
	cs, err := handshake(addr, &tls.Config{RootCAs: roots})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return cs.PeerCertificates[0].SerialNumber
}

// waitServed waits until new connections to addr are served the certificate with serial want.
func waitServed(t testing.TB, addr string, roots *x509.CertPool, want *big.Int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := servedSerial(t, addr, roots)
		if got.Cmp(want) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still served serial %x after 10s, want %x", got, want)
		}
		time.Sleep(watchEvery / 2)
	}
}

// waitFor polls cond until it holds, failing the test after 10 seconds.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(watchEvery / 2)
	}
}

// logEntries decodes the JSON lines in logs with the given level.
func logEntries(t testing.TB, logs *logtest.Buffer, level string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(logs.String()) {
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if e["level"] == level {
			out = append(out, e)
		}
	}
	return out
}

// current is the certificate r would serve a new connection now.
func current(t testing.TB, r *CertReloader) *x509.Certificate {
	t.Helper()
	c, err := r.TLSConfig().GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf
}

func TestTLSServesWithTestCA(t *testing.T) {
	p := newTLSPair(t)
	r, _ := newReloader(t, p)
	addr, pub := startTLSServer(t, r, defaultLimits)
	client, _ := httpsClient(t, p.ca.Pool())

	res, err := client.Get("https://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`"ok"`)) {
		t.Fatalf("GET /healthz: %d %q", res.StatusCode, body)
	}
	if res.Proto != "HTTP/1.1" || res.TLS == nil || res.TLS.Version < tls.VersionTLS12 {
		t.Errorf("proto %s, TLS %+v", res.Proto, res.TLS)
	}
	if got := res.TLS.PeerCertificates[0].SerialNumber; got.Cmp(p.leaf.SerialNumber) != 0 {
		t.Errorf("served serial %x, want %x", got, p.leaf.SerialNumber)
	}

	fx := fixture(t, "messages_message_created.json")
	res, err = client.Post("https://"+addr+"/webhook", "application/json", bytes.NewReader(fx))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("POST /webhook: %d %q", res.StatusCode, body)
	}
	if evs := pub.published(); len(evs) != 1 || !bytes.Equal(evs[0].Data, fx) {
		t.Fatalf("published %d events, want the fixture once", len(evs))
	}

	system, _ := httpsClient(t, nil)
	_, err = system.Get("https://" + addr + "/healthz")
	var verr *tls.CertificateVerificationError
	if !errors.As(err, &verr) {
		t.Fatalf("client without the test CA: err %v, want a certificate verification error", err)
	}
}

func TestTLSRefusesOldVersionsAndWeakCiphers(t *testing.T) {
	p := newTLSPair(t)
	r, _ := newReloader(t, p)
	addr, _ := startTLSServer(t, r, defaultLimits)

	for name, cfg := range map[string]*tls.Config{
		"TLS 1.1": {MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11},
		"CBC only": {MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
			tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
		}},
	} {
		cfg.RootCAs = p.ca.Pool()
		if cs, err := handshake(addr, cfg); err == nil {
			t.Errorf("%s: handshake succeeded with %s", name, tls.CipherSuiteName(cs.CipherSuite))
		} else if !strings.Contains(err.Error(), "protocol version") && !strings.Contains(err.Error(), "handshake failure") {
			t.Errorf("%s: err %v, want a protocol version or handshake failure alert", name, err)
		}
	}

	// The same client with an AEAD suite gets through: the refusals above are the suites'.
	for _, s := range r.TLSConfig().CipherSuites {
		if !strings.Contains(tls.CipherSuiteName(s), "_ECDSA_") {
			continue // the test certificate's key is ECDSA
		}
		cs, err := handshake(addr, &tls.Config{RootCAs: p.ca.Pool(), MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{s}})
		if err != nil || cs.Version != tls.VersionTLS12 || cs.CipherSuite != s {
			t.Errorf("TLS 1.2 with %s: version %x, suite %s, err %v", tls.CipherSuiteName(s), cs.Version, tls.CipherSuiteName(cs.CipherSuite), err)
		}
	}
	// A client that would speak h2 is held to HTTP/1.1, the only protocol fasthttp serves.
	cs, err := handshake(addr, &tls.Config{RootCAs: p.ca.Pool(), MinVersion: tls.VersionTLS13, NextProtos: []string{"h2", "http/1.1"}})
	if err != nil || cs.Version != tls.VersionTLS13 || cs.NegotiatedProtocol != "http/1.1" {
		t.Errorf("TLS 1.3 offering h2: version %x, protocol %q, err %v", cs.Version, cs.NegotiatedProtocol, err)
	}

	for _, s := range r.TLSConfig().CipherSuites {
		name := tls.CipherSuiteName(s)
		if !strings.HasPrefix(name, "TLS_ECDHE_") || !(strings.Contains(name, "_GCM_") || strings.Contains(name, "_CHACHA20_POLY1305")) {
			t.Errorf("configured suite %s is not ECDHE with an AEAD", name)
		}
	}
	if cfg := r.TLSConfig(); cfg.MinVersion != tls.VersionTLS12 || len(cfg.NextProtos) != 1 || cfg.NextProtos[0] != "http/1.1" {
		t.Errorf("MinVersion %x, NextProtos %q", cfg.MinVersion, cfg.NextProtos)
	}
}

func TestTLSRenewalServedWithoutDroppingConnections(t *testing.T) {
	p := newTLSPair(t)
	r, logs := newReloader(t, p)
	limits := defaultLimits
	limits.IdleTimeout = time.Minute // the kept-alive connection must outlive the renewal
	addr, _ := startTLSServer(t, r, limits)
	client, _ := httpsClient(t, p.ca.Pool())

	var dialed int
	get := func() (*x509.Certificate, bool) {
		t.Helper()
		var reused bool
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
			reused = i.Reused
			if !i.Reused {
				dialed++
			}
		}}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace),
			http.MethodGet, "https://"+addr+"/healthz", nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET /healthz: %v", err)
		}
		defer res.Body.Close()
		if _, err := io.Copy(io.Discard, res.Body); err != nil || res.StatusCode != http.StatusOK {
			t.Fatalf("GET /healthz: %d %v", res.StatusCode, err)
		}
		return res.TLS.PeerCertificates[0], reused
	}
	old, _ := get()
	if old.SerialNumber.Cmp(p.leaf.SerialNumber) != 0 {
		t.Fatalf("served serial %x, want %x", old.SerialNumber, p.leaf.SerialNumber)
	}

	watch(t, r)
	renewed := p.renew(t)
	waitServed(t, addr, p.ca.Pool(), renewed.SerialNumber)
	if got := r.NotAfter(); !got.Equal(renewed.NotAfter) {
		t.Errorf("NotAfter %v, want the renewed certificate's %v", got, renewed.NotAfter)
	}

	// The connection opened before the renewal still serves, on the certificate it began with.
	leaf, reused := get()
	if !reused || dialed != 1 || leaf.SerialNumber.Cmp(old.SerialNumber) != 0 {
		t.Fatalf("after renewal: reused %v, %d connections dialed, serial %x; want the first connection, serial %x",
			reused, dialed, leaf.SerialNumber, old.SerialNumber)
	}
	if !strings.Contains(logs.String(), `"serial":"`+renewed.SerialNumber.Text(16)+`"`) {
		t.Errorf("no log names the renewed serial %x:\n%s", renewed.SerialNumber, logs)
	}
}

func TestTLSBrokenRenewalKeepsCertificate(t *testing.T) {
	p := newTLSPair(t)
	r, logs := newReloader(t, p)
	addr, _ := startTLSServer(t, r, defaultLimits)
	watch(t, r)
	old := p.leaf

	// A key that parses but belongs to another certificate, as a half-done renewal leaves.
	other := newTLSPair(t)
	key, err := os.ReadFile(other.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	tlstest.WriteFile(t, p.keyFile, key)
	waitFor(t, "error logged", func() bool { return strings.Contains(logs.String(), `"level":"error"`) })
	time.Sleep(10 * watchEvery)
	if got := servedSerial(t, addr, p.ca.Pool()); got.Cmp(old.SerialNumber) != 0 {
		t.Fatalf("after a broken renewal served serial %x, want the old %x", got, old.SerialNumber)
	}
	errs := logEntries(t, logs, "error")
	if len(errs) != 1 {
		t.Fatalf("%d error entries over 10 intervals, want 1 (no repeat until the files change):\n%s", len(errs), logs)
	}
	if e := errs[0]; e["cert_file"] != p.certFile || e["key_file"] != p.keyFile || !strings.Contains(fmt.Sprint(e["error"]), p.keyFile) {
		t.Errorf("error entry %v does not name the files", e)
	}
	if strings.Contains(logs.String(), "PRIVATE KEY") || strings.Contains(logs.String(), string(key[30:60])) {
		t.Errorf("the log quotes the key:\n%s", logs)
	}

	// Garbage is a change too: tried, logged once more, still not served.
	tlstest.WriteFile(t, p.keyFile, []byte("not a key\n"))
	waitFor(t, "second error logged", func() bool { return len(logEntries(t, logs, "error")) == 2 })
	if got := servedSerial(t, addr, p.ca.Pool()); got.Cmp(old.SerialNumber) != 0 {
		t.Fatalf("after a garbage key served serial %x, want the old %x", got, old.SerialNumber)
	}

	fixed := p.renew(t)
	waitServed(t, addr, p.ca.Pool(), fixed.SerialNumber)
}

func TestTLSWatchFileRemovedAndRestored(t *testing.T) {
	p := newTLSPair(t)
	r, logs := newReloader(t, p)
	watch(t, r)
	old := p.leaf

	if err := os.Remove(p.certFile); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "missing file logged", func() bool { return len(logEntries(t, logs, "error")) > 0 })
	time.Sleep(10 * watchEvery)
	if errs := logEntries(t, logs, "error"); len(errs) != 1 || !strings.Contains(fmt.Sprint(errs[0]["error"]), p.certFile) {
		t.Fatalf("error entries %v, want one naming %s", errs, p.certFile)
	}
	if got := current(t, r); got.SerialNumber.Cmp(old.SerialNumber) != 0 {
		t.Fatalf("serving serial %x with the file gone, want the old %x", got.SerialNumber, old.SerialNumber)
	}

	renewed := p.renew(t)
	waitFor(t, "restored file served", func() bool { return current(t, r).SerialNumber.Cmp(renewed.SerialNumber) == 0 })
}

// TestTLSWatchSecretVolumeSwap renews the way a Kubernetes Secret volume does: the files are
// symlinks through ..data, which is swapped for a link to a new directory in one rename.
func TestTLSWatchSecretVolumeSwap(t *testing.T) {
	ca := tlstest.NewCA(t)
	vol := volumetest.New(t)
	publish := func() *x509.Certificate {
		t.Helper()
		var leaf *x509.Certificate
		vol.UpdateWith(t, func(dir string) { leaf = ca.Issue(t, filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")) })
		return leaf
	}
	first := publish()
	r, err := NewCertReloader(vol.Path("tls.crt"), vol.Path("tls.key"), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if got := current(t, r); got.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatalf("serving serial %x, want %x", got.SerialNumber, first.SerialNumber)
	}
	watch(t, r)
	second := publish()
	waitFor(t, "swapped certificate served", func() bool { return current(t, r).SerialNumber.Cmp(second.SerialNumber) == 0 })
}

func TestTLSNewCertReloaderRefusesBadPairs(t *testing.T) {
	p := newTLSPair(t)
	other := newTLSPair(t)
	garbage := filepath.Join(p.dir, "garbage")
	if err := os.WriteFile(garbage, []byte("-----BEGIN NOTHING-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(p.dir, "missing")
	for name, tc := range map[string]struct {
		cert, key string
		names     string // a file the error must name
		is        error  // what the error must wrap, when not nil
	}{
		"missing certificate": {missing, p.keyFile, missing, fs.ErrNotExist},
		"missing key":         {p.certFile, missing, missing, fs.ErrNotExist},
		"mismatched pair":     {p.certFile, other.keyFile, other.keyFile, nil},
		"garbage key":         {p.certFile, garbage, garbage, nil},
		"swapped files":       {p.keyFile, p.certFile, p.keyFile, nil},
	} {
		r, err := NewCertReloader(tc.cert, tc.key, zerolog.Nop())
		if err == nil {
			t.Errorf("%s: loaded, serving serial %x", name, current(t, r).SerialNumber)
			continue
		}
		if !strings.Contains(err.Error(), tc.names) || (tc.is != nil && !errors.Is(err, tc.is)) {
			t.Errorf("%s: err %v, want one naming %s", name, err, tc.names)
		}
	}
}

func TestTLSReloadLogsCertificate(t *testing.T) {
	p := newTLSPair(t)
	r, logs := newReloader(t, p)
	if e := logEntries(t, logs, "info"); len(e) != 1 || e[0]["serial"] != p.leaf.SerialNumber.Text(16) {
		t.Fatalf("load logged %v, want one info entry with serial %x", e, p.leaf.SerialNumber)
	}

	renewed := p.renew(t)
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	infos := logEntries(t, logs, "info")
	if len(infos) != 2 {
		t.Fatalf("%d info entries after Reload, want 2:\n%s", len(infos), logs)
	}
	e := infos[1]
	if e["serial"] != renewed.SerialNumber.Text(16) || e["subject"] != renewed.Subject.String() ||
		e["not_after"] != renewed.NotAfter.Format(zerolog.TimeFieldFormat) || e["cert_file"] != p.certFile {
		t.Errorf("reload logged %v, want serial %x, subject %s, not_after %v", e, renewed.SerialNumber, renewed.Subject, renewed.NotAfter)
	}
	if names, _ := e["dns_names"].([]any); len(names) != 1 || names[0] != "localhost" {
		t.Errorf("dns_names %v, want [localhost]", e["dns_names"])
	}
	if got := current(t, r).SerialNumber; got.Cmp(renewed.SerialNumber) != 0 || !r.NotAfter().Equal(renewed.NotAfter) {
		t.Errorf("serving serial %x until %v, want %x until %v", got, r.NotAfter(), renewed.SerialNumber, renewed.NotAfter)
	}

	// An expired certificate is served, with a warning, rather than refused.
	expired := p.ca.IssueUntil(t, p.certFile, p.keyFile, time.Now().Add(-time.Minute))
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := current(t, r).SerialNumber; got.Cmp(expired.SerialNumber) != 0 {
		t.Errorf("serving serial %x, want the expired %x", got, expired.SerialNumber)
	}
	if w := logEntries(t, logs, "warn"); len(w) != 1 || w[0]["serial"] != expired.SerialNumber.Text(16) || w[0]["outside_validity"] != true {
		t.Errorf("warnings %v, want one for the expired serial %x", w, expired.SerialNumber)
	}

	// A failed Reload returns the error and keeps serving.
	tlstest.WriteFile(t, p.keyFile, []byte("not a key\n"))
	if err := r.Reload(); err == nil || !strings.Contains(err.Error(), p.keyFile) {
		t.Errorf("Reload with a garbage key: %v, want an error naming %s", err, p.keyFile)
	}
	if got := current(t, r).SerialNumber; got.Cmp(expired.SerialNumber) != 0 {
		t.Errorf("after a failed Reload serving serial %x, want %x", got, expired.SerialNumber)
	}
}
