package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/testcontainers/testcontainers-go"
	tcnats "github.com/testcontainers/testcontainers-go/modules/nats"

	"github.com/ayrbridge/ayrbridge/internal/natstest"
	"github.com/ayrbridge/ayrbridge/internal/proc"
	"github.com/ayrbridge/ayrbridge/internal/proctest"
	"github.com/ayrbridge/ayrbridge/publish/cenats"
	"github.com/ayrbridge/ayrbridge/schema"
)

// TestBridgeAgainstNATSContainer is the end-to-end path of the compose stack: the NATS image and
// config compose runs, in a container; the bridge built from this repository, as a process
// pointed at it with NATS_URL; a webhook in; the CloudEvent read back from the stream. It skips
// where no Docker engine answers.
func TestBridgeAgainstNATSContainer(t *testing.T) {
	proctest.SkipShort(t, "starts a NATS container and runs the bridge binary")
	requireDocker(t)
	ctx := t.Context()

	var cf composeFile
	if err := strictYAML(readDeployFiles(t, ".")["compose.yaml"], &cf); err != nil {
		t.Fatal(err)
	}
	ctr, err := tcnats.Run(ctx, cf.Services["nats"].Image,
		testcontainers.WithFiles(testcontainers.ContainerFile{
			HostFilePath: filepath.Join("nats", "single-node.conf"), ContainerFilePath: "/etc/nats/nats.conf", FileMode: 0o644,
		}),
		testcontainers.WithCmd("--config", "/etc/nats/nats.conf"),
	)
	testcontainers.CleanupContainer(t, ctr)
	if err != nil {
		t.Fatalf("start NATS container: %v", err)
	}
	natsURL, err := ctr.ConnectionString(ctx)
	if err != nil {
		t.Fatal(err)
	}
	webhookRoundTrip(t, natsURL)
}

// TestBridgeProcessAgainstServer runs the same round trip as TestBridgeAgainstNATSContainer with
// an in-process nats-server in place of the container, so the path is exercised without Docker.
func TestBridgeProcessAgainstServer(t *testing.T) {
	proctest.SkipShort(t, "builds and runs the bridge binary")
	webhookRoundTrip(t, natstest.RunServer(t, "").ClientURL())
}

// TestEdgeThroughHubConf runs deploy/nats/hub.conf in-process (on free loopback ports and a
// temporary store, otherwise as compose runs it) and the bridge as an edge of it, as the edge
// profile does: a webhook posted to the edge must reach the hub's AYRSHARE stream, which the
// edge creates with itself as a source.
func TestEdgeThroughHubConf(t *testing.T) {
	proctest.SkipShort(t, "builds and runs the bridge binary as an edge")
	ctx := t.Context()
	opts := &server.Options{}
	if err := opts.ProcessConfigString(string(readDeployFiles(t, ".")["nats/hub.conf"])); err != nil {
		t.Fatal(err)
	}
	opts.Host, opts.Port = "127.0.0.1", -1
	opts.LeafNode.Host, opts.LeafNode.Port = "127.0.0.1", -1
	opts.HTTPPort, opts.StoreDir = 0, t.TempDir()
	opts.NoLog, opts.NoSigs = true, true
	hub, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go hub.Start()
	t.Cleanup(func() { hub.Shutdown(); hub.WaitForShutdown() })
	if !hub.ReadyForConnections(20 * time.Second) {
		t.Fatal("hub not ready")
	}
	// The server writes the leaf port it picked back into opts before it is ready.
	leafURL := fmt.Sprintf("nats-leaf://127.0.0.1:%d", opts.LeafNode.Port)

	addr := startBridgeEnv(t,
		"NATS_HUB_URL="+leafURL,
		"NATS_EDGE_ID=t1",
		"NATS_EMBEDDED_DIR="+t.TempDir(),
		"NATS_EMBEDDED_LISTEN=127.0.0.1:0",
		"NATS_HUB_CHECK_INTERVAL=1s",
	)
	waitReady(t, "http://"+addr+"/readyz")
	body := socialLink(t)
	postWebhook(t, "http://"+addr+"/webhook", body, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")

	_, js := natstest.Connect(t, hub)
	natstest.Eventually(t, 30*time.Second, func() error {
		s, err := js.Stream(ctx, "AYRSHARE")
		if err != nil {
			return err
		}
		if n := s.CachedInfo().State.Msgs; n != 1 {
			return fmt.Errorf("hub stream holds %d events, want 1", n)
		}
		return nil
	})
	s, err := js.Stream(ctx, "AYRSHARE")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := s.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if id := msg.Header.Get(nats.MsgIdHdr); msg.Subject != "ayrshare.social.link" || id != "TKLc30192HLGw5UeJ46" {
		t.Errorf("hub stored %s with id %q, want ayrshare.social.link TKLc30192HLGw5UeJ46", msg.Subject, id)
	}
}

// webhookRoundTrip builds and starts the bridge against natsURL, posts a webhook twice and reads
// the one stored CloudEvent back from the stream.
func webhookRoundTrip(t *testing.T, natsURL string) {
	t.Helper()
	ctx := t.Context()
	addr := startBridge(t, natsURL)
	waitReady(t, "http://"+addr+"/readyz")

	body := socialLink(t)
	const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	first := postWebhook(t, "http://"+addr+"/webhook", body, traceparent)
	if first.Subject != "ayrshare.social.link" || first.ID != "TKLc30192HLGw5UeJ46" || first.Duplicate {
		t.Fatalf("bridge answered %+v, want a new event on ayrshare.social.link with the hookId as id", first)
	}
	if again := postWebhook(t, "http://"+addr+"/webhook", body, traceparent); !again.Duplicate || again.Sequence != first.Sequence {
		t.Errorf("redelivery answered %+v, want a duplicate of sequence %d", again, first.Sequence)
	}

	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.OrderedConsumer(ctx, "AYRSHARE", jetstream.OrderedConsumerConfig{FilterSubjects: []string{schema.StreamSubjects}})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil {
		t.Fatalf("read the event back: %v", err)
	}
	h := msg.Headers()
	for _, c := range []struct{ name, got, want string }{
		{"subject", msg.Subject(), "ayrshare.social.link"},
		{"ce-id", h.Get(cenats.HeaderID), "TKLc30192HLGw5UeJ46"},
		{"ce-type", h.Get(cenats.HeaderType), "com.ayrshare.social.link"},
		{"ce-source", h.Get(cenats.HeaderSource), "/ayrshare/profiles/140b8700bd6ade089b242d845e268fb886130c53"},
		{"ce-dataschema", h.Get(cenats.HeaderDataSchema), schema.DataSchema(schema.ActionSocial)},
		{"ce-traceparent", h.Get(cenats.HeaderTraceParent), traceparent},
		{"Nats-Msg-Id", h.Get(nats.MsgIdHdr), "TKLc30192HLGw5UeJ46"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if !bytes.Equal(msg.Data(), body) {
		t.Errorf("data differs from the webhook body:\n%s\nwant:\n%s", msg.Data(), body)
	}
	ev, err := cenats.DecodeMsg(ctx, &nats.Msg{Subject: msg.Subject(), Header: h, Data: msg.Data()})
	if err != nil {
		t.Fatalf("decode as CloudEvent: %v", err)
	}
	if err := ev.Validate(); err != nil || ev.ID() != first.ID {
		t.Errorf("CloudEvent %s invalid (%v) or not the stored one", ev.ID(), err)
	}
}

// socialLink is the fixture both round trips post.
func socialLink(t *testing.T) []byte {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("..", "schema", "testdata", "fixtures", "social_link.json"))
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// requireDocker skips the test, saying why, when no Docker engine answers.
func requireDocker(t *testing.T) {
	t.Helper()
	if reason := dockerUnavailable(t.Context()); reason != "" {
		t.Skip("no Docker engine: " + reason)
	}
}

// dockerUnavailable asks testcontainers' Docker provider for the engine's health and returns why
// it is not usable, or "" when it is. testcontainers panics when it finds no Docker host at all.
func dockerUnavailable(ctx context.Context) (reason string) {
	defer func() {
		if r := recover(); r != nil {
			reason = fmt.Sprintf("testcontainers found no Docker host (%v); set DOCKER_HOST or start Docker to run this test", r)
		}
	}()
	p, err := testcontainers.NewDockerProvider()
	if err != nil {
		return err.Error()
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := p.Health(ctx); err != nil {
		return err.Error()
	}
	return ""
}

func TestMain(m *testing.M) { proctest.Main(m) }

// startBridge builds cmd/bridge (once per test binary) and runs it against natsURL on a free
// loopback port, with only the environment given here, and returns its address. When the
// test ends it stops the bridge with SIGTERM and expects a clean exit.
func startBridge(t *testing.T, natsURL string) string {
	t.Helper()
	return startBridgeEnv(t, "NATS_URL="+natsURL)
}

// startBridgeEnv is startBridge with the NATS settings in env.
func startBridgeEnv(t *testing.T, env ...string) string {
	t.Helper()
	addrs := make(chan string, 1)
	p := proctest.Start(t, proc.Config{Bin: proctest.Build(t, "./cmd/bridge"), CleanEnv: true, Env: append([]string{
		"BRIDGE_LISTEN=127.0.0.1:0",
		"LOG_FORMAT=json",
		"LOG_LEVEL=info",
		"HOME=" + t.TempDir(),
	}, env...), Line: func(b []byte) {
		var line struct {
			Msg  string `json:"message"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal(b, &line) == nil && line.Msg == "accepting webhooks on /webhook" {
			addrs <- line.Addr
		}
	}})
	// Registered after proctest.Start's kill, so it runs first.
	t.Cleanup(func() {
		if err := p.Stop(30 * time.Second); err != nil {
			t.Errorf("bridge did not stop cleanly on SIGTERM: %v", err)
		}
	})
	select {
	case addr := <-addrs:
		return addr
	case <-p.Done():
		t.Fatalf("bridge exited before listening: %v", p.Err())
	case <-time.After(30 * time.Second):
		t.Fatal("bridge not listening after 30s")
	}
	return ""
}

// waitReady polls url until it answers 200, failing after 30 seconds.
func waitReady(t *testing.T, url string) {
	t.Helper()
	natstest.Eventually(t, 30*time.Second, func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s answered %s", url, resp.Status)
		}
		return nil
	})
}

// client bounds every request to the bridge, so one that never answers fails the test
// instead of hanging it.
var client = &http.Client{Timeout: 30 * time.Second}

// accepted is the bridge's 200 answer.
type accepted struct {
	ID        string `json:"id"`
	Subject   string `json:"subject"`
	Sequence  uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate"`
}

func postWebhook(t *testing.T, url string, body []byte, traceparent string) accepted {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Traceparent", traceparent)
	req.Header.Set("X-Ayrshare-Delivery-Id", "delivery-1")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /webhook: %s %s", resp.Status, strings.TrimSpace(string(b)))
	}
	var a accepted
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("answer %s: %v", b, err)
	}
	return a
}
