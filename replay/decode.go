package replay

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/ayrbridge/ayrbridge/schema"
)

// ErrMalformed means the history response is not the documented shape: one JSON object whose
// members are arrays of payload objects.
var ErrMalformed = errors.New("malformed history response")

// Item is one payload of the history response.
type Item struct {
	Action string // the member (action) whose array held the payload
	Data   []byte // the payload's JSON exactly as received; never reused by the Decoder
}

// DefaultMaxItemBytes is the largest payload a Decoder accepts unless told otherwise; NATS
// refuses messages above 1 MB by default, so larger payloads could not be replayed anyway.
const DefaultMaxItemBytes = 8 << 20

const (
	readSize  = 256 << 10 // bytes asked from the reader at once
	arenaSize = 256 << 10 // payloads are copied into blocks of this size
)

type decodeState uint8

const (
	stBegin   decodeState = iota // before the top-level object
	stMembers                    // inside the object, before a key or the closing brace
	stItems                      // inside a member's array
	stEnd                        // after the top-level object
)

// Decoder reads a history response as a stream: it yields one payload at a time and holds only
// the payload being read, so memory does not grow with the size of the response. It finds where
// each key, value and payload ends with schema.ValueLen, so they are valid JSON; whether a
// payload is a valid webhook is for schema.NewEvent to decide. Members whose value is not an
// array are skipped and listed by Skipped.
type Decoder struct {
	r          io.Reader
	buf        []byte
	start, end int   // buf[start:end] is read but not yet decoded
	off        int64 // offset in the response of buf[0]
	maxItem    int
	state      decodeState
	first      bool   // no member or item yet at this level, so no comma is due
	action     string // member being read
	index      int    // payloads read in this member
	arena      []byte
	skipped    []string
	err        error // sticky
}

// NewDecoder returns a Decoder reading r; maxItem bounds one payload (DefaultMaxItemBytes when <= 0).
func NewDecoder(r io.Reader, maxItem int) *Decoder {
	if maxItem <= 0 {
		maxItem = DefaultMaxItemBytes
	}
	return &Decoder{r: r, buf: make([]byte, readSize), maxItem: maxItem}
}

// Skipped returns the members seen so far whose value was not an array.
func (d *Decoder) Skipped() []string { return d.skipped }

// Next returns the next payload. At the end of a well-formed response it returns io.EOF; a
// response that is not the documented shape gives an error wrapping ErrMalformed that says
// where; a failing reader gives its error. Errors are final.
func (d *Decoder) Next() (Item, error) {
	if d.err != nil {
		return Item{}, d.err
	}
	it, err := d.next()
	if err != nil {
		d.err = err
	}
	return it, err
}

func (d *Decoder) next() (Item, error) {
	for {
		c, err := d.skipSpace()
		if d.state == stEnd {
			if err == io.EOF {
				return Item{}, io.EOF
			}
			if err != nil {
				return Item{}, err
			}
			return Item{}, d.malformed("data after the end of the object")
		}
		if err == io.EOF && d.state == stBegin && d.off+int64(d.start) == 0 {
			return Item{}, d.malformed("empty response")
		}
		if err == io.EOF {
			return Item{}, d.malformed("response ends early")
		}
		if err != nil {
			return Item{}, err
		}
		switch d.state {
		case stBegin:
			if c != '{' {
				return Item{}, d.malformed(fmt.Sprintf("want an object keyed by action, found %q", c))
			}
			d.start++
			d.state, d.first = stMembers, true
		case stMembers:
			if err := d.member(c); err != nil {
				return Item{}, err
			}
		case stItems:
			if c == ']' {
				d.start++
				d.state, d.first = stMembers, false // a member is complete: a comma is due
				continue
			}
			if c, err = d.separator(c); err != nil {
				return Item{}, err
			}
			if c != '{' {
				return Item{}, d.malformed(fmt.Sprintf("payload %d of %q is not an object", d.index, d.action))
			}
			n, err := d.valueLen("payload")
			if err != nil {
				return Item{}, err
			}
			data := d.keep(d.buf[d.start : d.start+n])
			d.start += n
			d.index++
			return Item{Action: d.action, Data: data}, nil
		}
	}
}

// member reads a key and the start of its value: it enters the array, or skips a value that is
// not an array, or ends the object.
func (d *Decoder) member(c byte) error {
	if c == '}' {
		d.start++
		d.state = stEnd
		return nil
	}
	c, err := d.separator(c)
	if err != nil {
		return err
	}
	if c != '"' {
		return d.malformed(fmt.Sprintf("want an action name, found %q", c))
	}
	n, err := d.valueLen("key")
	if err != nil {
		return err
	}
	key := d.buf[d.start : d.start+n]
	if bytes.IndexByte(key, '\\') < 0 {
		d.action = string(key[1 : n-1])
	} else if err := json.Unmarshal(key, &d.action); err != nil {
		return d.malformed("bad action name: " + err.Error())
	}
	d.start += n
	if c, err = d.expect(':'); err != nil {
		return err
	}
	if c == '[' {
		d.start++
		d.state, d.first, d.index = stItems, true, 0
		return nil
	}
	// Not an array: nothing to replay in it, but the rest of the response may still be good.
	if n, err = d.valueLen("value"); err != nil {
		return err
	}
	d.start += n
	d.skipped = append(d.skipped, d.action)
	return nil
}

// separator consumes the comma due before every member or item but the first, and returns the
// byte that starts the member or item.
func (d *Decoder) separator(c byte) (byte, error) {
	if d.first {
		d.first = false
		return c, nil
	}
	if c != ',' {
		return 0, d.malformed(fmt.Sprintf("want a comma, found %q", c))
	}
	d.start++
	return d.need()
}

// expect consumes the byte want and returns the next significant byte.
func (d *Decoder) expect(want byte) (byte, error) {
	c, err := d.need()
	if err != nil {
		return 0, err
	}
	if c != want {
		return 0, d.malformed(fmt.Sprintf("want %q, found %q", want, c))
	}
	d.start++
	return d.need()
}

// need is skipSpace for places where the response may not end.
func (d *Decoder) need() (byte, error) {
	c, err := d.skipSpace()
	if err == io.EOF {
		return 0, d.malformed("response ends early")
	}
	return c, err
}

// skipSpace advances past whitespace and returns the next byte without consuming it.
func (d *Decoder) skipSpace() (byte, error) {
	for {
		for d.start < d.end {
			switch c := d.buf[d.start]; c {
			case ' ', '\t', '\n', '\r':
				d.start++
			default:
				return c, nil
			}
		}
		if err := d.fill(); err != nil {
			return 0, err
		}
	}
}

// valueLen returns the length of the JSON value starting at buf[start], validated by
// schema.ValueLen and read further as needed; the value stays in buf[start:] while it is
// scanned. part says what the value is for errors: "payload", "value" or "key".
func (d *Decoder) valueLen(part string) (int, error) {
	eof := false
	for {
		b := d.buf[d.start:d.end]
		n, err := schema.ValueLen(b)
		switch {
		case err == nil:
			return n, nil
		case !errors.Is(err, schema.ErrTruncatedJSON):
			return 0, d.malformed(d.name(part) + " is not valid JSON")
		case eof:
			return 0, d.malformed("response ends inside " + d.name(part))
		case len(b) >= d.maxItem:
			return 0, d.malformed(fmt.Sprintf("%s exceeds %d bytes", d.name(part), d.maxItem))
		}
		// Every scan starts at the value's start: reading as much again before the next one
		// keeps a value that arrives in small reads from costing a scan per read.
		for want := min(2*len(b), d.maxItem); d.end-d.start < want; {
			if err := d.fill(); err == io.EOF {
				eof = true
				break
			} else if err != nil {
				return 0, err
			}
		}
	}
}

// name names the value being read in an error.
func (d *Decoder) name(part string) string {
	switch part {
	case "payload":
		return fmt.Sprintf("payload %d of %q", d.index, d.action)
	case "value":
		return fmt.Sprintf("the value of %q", d.action)
	}
	return "an action name"
}

// fill reads more of the response, moving the undecoded bytes to the front of buf and growing
// it when a value fills it. It returns io.EOF when the response has no more bytes.
func (d *Decoder) fill() error {
	if d.start > 0 {
		d.off += int64(d.start)
		d.end = copy(d.buf, d.buf[d.start:d.end])
		d.start = 0
	}
	if d.end == len(d.buf) {
		d.buf = append(d.buf, make([]byte, len(d.buf))...)
	}
	for {
		n, err := d.r.Read(d.buf[d.end:])
		d.end += n
		if n > 0 {
			return nil
		}
		if err != nil {
			if err == io.EOF {
				return io.EOF
			}
			return fmt.Errorf("read history response: %w", err)
		}
	}
}

// keep copies a payload into the arena: blocks of arenaSize shared by consecutive payloads
// make one allocation serve many, and each block is freed once its payloads are published.
func (d *Decoder) keep(b []byte) []byte {
	if len(b) > cap(d.arena)-len(d.arena) {
		d.arena = make([]byte, 0, max(arenaSize, len(b)))
	}
	start := len(d.arena)
	d.arena = append(d.arena, b...)
	return d.arena[start:len(d.arena):len(d.arena)]
}

func (d *Decoder) malformed(why string) error {
	return fmt.Errorf("%w: at byte %d: %s", ErrMalformed, d.off+int64(d.start), why)
}
