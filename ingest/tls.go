package ingest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// CertReloader serves the certificate in a PEM certificate file and key file, and picks up
// their renewal without a restart or a dropped connection.
//
// A pair that cannot be loaded (a file missing, garbage, or a key that does not match the
// certificate, as between a renewal's two writes) never replaces the certificate being
// served. An expired or not yet valid certificate is served all the same, with a warning:
// refusing it would keep the bridge from starting over a late renewal, and clients check
// validity themselves.
type CertReloader struct {
	certFile, keyFile string
	log               zerolog.Logger
	cert              atomic.Pointer[tls.Certificate]

	mu   sync.Mutex // one reload at a time, so seen matches the last files read
	seen pairStamp  // the files' stamps when they were last read, loaded or not
}

// pairStamp is both files' stamps; a file that cannot be stat'ed has the zero stamp, so its
// disappearance and its return are changes too.
type pairStamp struct{ cert, key fileStamp }

// NewCertReloader loads certFile and keyFile, or says which cannot be loaded and why.
func NewCertReloader(certFile, keyFile string, log zerolog.Logger) (*CertReloader, error) {
	r := &CertReloader{certFile: certFile, keyFile: keyFile, log: log.With().Str("component", "tls").Logger()}
	r.seen = r.stamps()
	cert, err := loadPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	r.cert.Store(cert)
	r.logLoaded(cert, "certificate loaded")
	return r, nil
}

// Reload reads both files now; when they cannot be loaded it logs why, keeps serving the
// current certificate and returns the error.
func (r *CertReloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	// Stamped before reading: a file replaced during the read changes its stamp again and is
	// read again on the next check, rather than hidden behind a stamp taken after it.
	r.seen = r.stamps()
	cert, err := loadPair(r.certFile, r.keyFile)
	if err != nil {
		r.log.Error().Str("cert_file", r.certFile).Str("key_file", r.keyFile).Err(err).
			Msg("certificate not reloaded, still serving the previous one")
		return err
	}
	r.cert.Store(cert)
	r.logLoaded(cert, "certificate reloaded")
	return nil
}

// Watch reloads the pair whenever either file's stamp changes, checking every interval until
// ctx ends. A pair that fails to load is logged once and tried again only when a file changes
// again, so a broken renewal does not log every interval.
func (r *CertReloader) Watch(ctx context.Context, every time.Duration) {
	poll(ctx, every, func() {
		r.mu.Lock()
		changed := r.stamps() != r.seen
		r.mu.Unlock()
		if changed {
			_ = r.Reload() // logged by Reload
		}
	})
}

// TLSConfig returns a server configuration that serves the current certificate on every new
// connection, with TLS 1.2 or later and forward-secret AEAD cipher suites only.
func (r *CertReloader) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// TLS 1.2 only; TLS 1.3's suites are all AEAD and not configurable.
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		// fasthttp speaks HTTP/1.1 only, so ALPN must not let a client choose h2.
		NextProtos: []string{"http/1.1"},
		// Looked up per handshake, so connections already open keep the certificate they
		// started with and new ones get the renewed one.
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return r.cert.Load(), nil },
	}
}

// NotAfter returns when the certificate being served expires.
func (r *CertReloader) NotAfter() time.Time { return r.cert.Load().Leaf.NotAfter }

// Collector exposes when the served certificate expires, so an alert fires while a renewal
// that keeps failing still has time to be fixed.
func (r *CertReloader) Collector() prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ayrbridge_tls_certificate_expiry_timestamp_seconds",
		Help: "When the certificate served on BRIDGE_LISTEN expires (Unix time).",
	}, func() float64 { return float64(r.NotAfter().Unix()) })
}

func (r *CertReloader) stamps() pairStamp {
	var s pairStamp
	s.cert, _, _ = stampOf(r.certFile)
	s.key, _, _ = stampOf(r.keyFile)
	return s
}

func (r *CertReloader) logLoaded(cert *tls.Certificate, msg string) {
	leaf := cert.Leaf
	ips := make([]string, len(leaf.IPAddresses))
	for i, ip := range leaf.IPAddresses {
		ips[i] = ip.String()
	}
	ev := r.log.Info()
	if now := time.Now(); now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		ev = r.log.Warn().Bool("outside_validity", true)
	}
	ev.Str("cert_file", r.certFile).Str("subject", leaf.Subject.String()).Strs("dns_names", leaf.DNSNames).
		Strs("ip_addresses", ips).Str("serial", leaf.SerialNumber.Text(16)).
		Time("not_before", leaf.NotBefore).Time("not_after", leaf.NotAfter).Msg(msg)
}

// loadPair reads and parses a certificate and key file. Its errors name the files but never
// quote them: the key file's content is a secret.
func loadPair(certFile, keyFile string) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("ingest: read TLS certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("ingest: read TLS key: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("ingest: TLS certificate %s with key %s: %w", certFile, keyFile, err)
	}
	if cert.Leaf == nil { // set by X509KeyPair unless GODEBUG x509keypairleaf=0
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("ingest: TLS certificate %s: %w", certFile, err)
		}
	}
	return &cert, nil
}
