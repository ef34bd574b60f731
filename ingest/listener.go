package ingest

import (
	"io"
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

// A socket closed with unread data in it is reset, and the reset can overtake the answer still
// on its way: the sender of an oversized body, which fasthttp refuses from its headers while
// the body is arriving, would read "connection reset by peer" instead of its 413. So closing
// half-closes, as net/http does, which sends a FIN after the answer; it then reads and drops
// what still comes, and closes the socket only when the peer is done or one of these bounds
// is reached, which keep a client from holding a connection by sending forever.
const (
	// drainTimeout bounds how long a closing connection is read. It keeps its slot meanwhile,
	// so the connection limit also bounds how many connections drain at once.
	drainTimeout = 2 * time.Second
	// drainBytes bounds what is read: eight times DefaultMaxBodyBytes, room for what a sender
	// that stops writing once it has its answer can still have in flight.
	drainBytes = 8 << 20
)

// countedConn gives its slot back once, however often it is closed, and only once the socket
// is closed for real.
type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

// Close returns at once; where the socket can be half-closed, the reading and the real close
// happen in the background.
func (c *countedConn) Close() error {
	err := net.ErrClosed
	c.once.Do(func() {
		if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
			err = nil
			go c.drain()
			return
		}
		err = c.Conn.Close()
		c.release()
	})
	return err
}

func (c *countedConn) drain() {
	defer c.release()
	defer c.Conn.Close()
	if c.Conn.SetReadDeadline(time.Now().Add(drainTimeout)) == nil {
		_, _ = io.CopyN(io.Discard, c.Conn, drainBytes)
	}
}
