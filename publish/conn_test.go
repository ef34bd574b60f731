package publish_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	"github.com/rs/zerolog"

	"github.com/ayrbridge/ayrbridge/publish"
)

// runAuthServer starts a plain nats-server with opts' auth settings on a random port.
func runAuthServer(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	opts.Host, opts.Port, opts.NoLog, opts.NoSigs = "127.0.0.1", server.RANDOM_PORT, true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(ns.Shutdown)
	return ns
}

func TestConnectAuthKinds(t *testing.T) {
	dir := t.TempDir()
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := user.Seed()
	pub, _ := user.PublicKey()
	seedFile := writeFile(t, dir, "user.nk", seed)
	pki := newPKI(t, dir)

	tests := map[string]struct {
		server *server.Options
		good   publish.ConnConfig
		bad    publish.ConnConfig
		scheme string
	}{
		"user and password": {
			&server.Options{Username: "bridge", Password: "pw"},
			publish.ConnConfig{User: "bridge", Password: "pw"},
			publish.ConnConfig{User: "bridge", Password: "wrong"}, "nats",
		},
		"token": {
			&server.Options{Authorization: "tok"},
			publish.ConnConfig{Token: "tok"},
			publish.ConnConfig{Token: "nope"}, "nats",
		},
		"nkey": {
			&server.Options{Nkeys: []*server.NkeyUser{{Nkey: pub}}},
			publish.ConnConfig{NKeySeed: seedFile},
			publish.ConnConfig{}, "nats",
		},
		"mutual tls": {
			&server.Options{TLSConfig: pki.serverTLS, TLSVerify: true, TLS: true},
			publish.ConnConfig{TLSCA: pki.caFile, TLSCert: pki.clientCert, TLSKey: pki.clientKey},
			publish.ConnConfig{TLSCA: pki.caFile}, "tls",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			ns := runAuthServer(t, tt.server)
			url := tt.scheme + "://" + ns.Addr().String()
			tt.good.URLs = []string{url}
			nc, err := publish.Connect(tt.good, nil, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			if err := publish.WaitConnected(ctxTimeout(t, 5*time.Second), nc); err != nil {
				t.Fatalf("good credentials did not connect: %v (last error %v)", err, nc.LastError())
			}
			tt.bad.URLs = []string{url}
			bad, err := publish.Connect(tt.bad, nil, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			defer bad.Close()
			if err := publish.WaitConnected(ctxTimeout(t, 700*time.Millisecond), bad); err == nil {
				t.Fatal("bad credentials connected")
			}
		})
	}
}

func TestConnectRejectsHalfTLSPair(t *testing.T) {
	_, err := publish.Connect(publish.ConnConfig{URLs: []string{"nats://127.0.0.1:1"}, TLSCert: "c.pem"}, nil, zerolog.Nop())
	if err == nil || !strings.Contains(err.Error(), "together") {
		t.Fatalf("Connect with a cert and no key = %v", err)
	}
}

func TestLogDictHidesSecrets(t *testing.T) {
	var out strings.Builder
	log := zerolog.New(&out)
	cfg := publish.ConnConfig{URLs: []string{"nats://bridge:hunter2@nats-1:4222", "tls://nats-2:4222"}, User: "bridge", Password: "hunter2", Token: "tok-xyz"}
	log.Info().Dict("nats", cfg.LogDict()).Msg("start")
	var line struct {
		NATS struct {
			URLs []string `json:"urls"`
			Auth string   `json:"auth"`
		} `json:"nats"`
	}
	if err := json.Unmarshal([]byte(out.String()), &line); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "hunter2") || strings.Contains(out.String(), "tok-xyz") {
		t.Fatalf("secret in log: %s", out.String())
	}
	if line.NATS.Auth != "user/password" || len(line.NATS.URLs) != 2 || line.NATS.URLs[0] != "nats://[redacted]@nats-1:4222" {
		t.Fatalf("logged %s", out.String())
	}
}

type pki struct {
	caFile, clientCert, clientKey string
	serverTLS                     *tls.Config
}

// newPKI makes a CA, a server certificate for 127.0.0.1 and a client certificate.
func newPKI(t *testing.T, dir string) pki {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(name string, usage x509.ExtKeyUsage, serial int64) (certPEM, keyPEM []byte) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature,
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kb, _ := x509.MarshalECPrivateKey(key)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	}
	srvCert, srvKey := issue("server", x509.ExtKeyUsageServerAuth, 2)
	cliCert, cliKey := issue("client", x509.ExtKeyUsageClientAuth, 3)
	pair, err := tls.X509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pki{
		caFile:     writeFile(t, dir, "ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})),
		clientCert: writeFile(t, dir, "client.pem", cliCert),
		clientKey:  writeFile(t, dir, "client-key.pem", cliKey),
		serverTLS: &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool,
			ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12},
	}
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
