package natstest

import (
	"os"
	"testing"

	"github.com/ayrbridge/ayrbridge/internal/proc"
	"github.com/ayrbridge/ayrbridge/internal/proctest"
)

// StartServerProcessConf runs the nats-server built from the module version in go.mod with
// `-c conf`, and waits until url (nats://host:port, the conf's client listen address) accepts
// connections. Start starts it again from the same conf, so on the same ports and store.
func StartServerProcessConf(t testing.TB, conf, url string) *ServerProcess {
	t.Helper()
	bin := proctest.Build(t, "github.com/nats-io/nats-server/v2")
	p := &ServerProcess{t: t, URL: url, cfg: proc.Config{Bin: bin, Args: []string{"-c", conf}}}
	p.Start()
	return p
}

// Signal sends sig to the running process; it does nothing when not running.
func (p *ServerProcess) Signal(sig os.Signal) error {
	if p.proc == nil {
		return nil
	}
	return p.proc.Signal(sig)
}
