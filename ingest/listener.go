package ingest

import (
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// overloadAnswer is what a connection beyond the limit gets before it is closed: a 503 that
// Ayrshare retries, in the same JSON shape as every other refusal.
func overloadAnswer() []byte {
	body := `{"error":"too many connections, retry later"}` + "\n"
	return []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n" +
		"Connection: close\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}

// LimitListener returns a listener that serves at most max connections at once. Connections
// beyond that are answered with a JSON 503 and closed at once, rather than left waiting or
// answered in plain text by the HTTP server.
func LimitListener(ln net.Listener, max int) net.Listener {
	return &limitListener{Listener: ln, max: int64(max), answer: overloadAnswer()}
}

type limitListener struct {
	net.Listener
	max    int64
	active atomic.Int64
	answer []byte
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.active.Add(1) <= l.max {
			return &countedConn{Conn: c, release: func() { l.active.Add(-1) }}, nil
		}
		l.active.Add(-1)
		go func() {
			// Off the accept loop: a client that does not read must not stall accepting.
			_ = c.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = c.Write(l.answer)
			c.Close()
		}()
	}
}

// countedConn gives its slot back once, however often it is closed.
type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
