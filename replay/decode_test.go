package replay

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"testing/iotest"
)

// decodeAll reads every item of r, failing the test on an error other than io.EOF.
func decodeAll(t *testing.T, r io.Reader) ([]Item, *Decoder) {
	t.Helper()
	d := NewDecoder(r, 0)
	var items []Item
	for {
		it, err := d.Next()
		if err == io.EOF {
			return items, d
		}
		if err != nil {
			t.Fatalf("item %d: %v", len(items), err)
		}
		items = append(items, it)
	}
}

func itemsString(items []Item) string {
	var b strings.Builder
	for _, it := range items {
		fmt.Fprintf(&b, "%s=%s;", it.Action, it.Data)
	}
	return b.String()
}

func TestDecodeSample(t *testing.T) {
	raw, err := os.ReadFile("testdata/history_sample.json")
	if err != nil {
		t.Fatal(err)
	}
	items, _ := decodeAll(t, bytes.NewReader(raw))
	wantActions := []string{"social", "social", "scheduled", "scheduled"}
	wantIDs := []string{"6e4zPT9ozQpxD72WX78r", "UWURsgBxTdRAMCZJV4Yp", "AxGbVck3Y7hsOdbAqVp7", "D92f6fMh2FCxNps4S27O"}
	if len(items) != len(wantActions) {
		t.Fatalf("got %d items, want %d", len(items), len(wantActions))
	}
	for i, it := range items {
		if it.Action != wantActions[i] {
			t.Errorf("item %d action %q, want %q", i, it.Action, wantActions[i])
		}
		// Byte for byte as in the response: the payload is a slice of the file.
		if !bytes.Contains(raw, it.Data) || it.Data[0] != '{' || it.Data[len(it.Data)-1] != '}' || !json.Valid(it.Data) {
			t.Errorf("item %d is not a payload of the file as written: %.80s", i, it.Data)
		}
		if !bytes.Contains(it.Data, []byte(`"hookId": "`+wantIDs[i]+`"`)) {
			t.Errorf("item %d lacks hookId %s", i, wantIDs[i])
		}
	}
}

// readers feed a response in different chunkings, so every refill path runs.
var readers = map[string]func(string) io.Reader{
	"whole":    func(s string) io.Reader { return strings.NewReader(s) },
	"one byte": func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) },
	"half":     func(s string) io.Reader { return iotest.HalfReader(strings.NewReader(s)) },
}

func TestDecodeWellFormed(t *testing.T) {
	tests := map[string]struct {
		in, want string
		skipped  []string
	}{
		"empty object":  {`{}`, ``, nil},
		"empty arrays":  {` { "social" : [ ] , "feed":[]} `, ``, nil},
		"compact":       {`{"a":[{"x":1},{"y":2}],"b":[{}]}`, `a={"x":1};a={"y":2};b={};`, nil},
		"whitespace":    {"{\n \"a\" :\t[\r\n {\"x\": [1, 2]} ,\n {\"y\":{}}\n ]\n}\n", `a={"x": [1, 2]};a={"y":{}};`, nil},
		"quotes inside": {`{"a":[{"s":"}]\"{["},{"t":"\\"},{"u":"\\\"}"}]}`, `a={"s":"}]\"{["};a={"t":"\\"};a={"u":"\\\"}"};`, nil},
		"escaped key":   {`{"mess\u0061ges":[{"k":true}]}`, `messages={"k":true};`, nil},
		"big numbers": {`{"accountActivity":[{"id":123456789012345678901234567890,"f":1.5e300}]}`,
			`accountActivity={"id":123456789012345678901234567890,"f":1.5e300};`, nil},
		"non-array members skipped": {`{"status":"success","count":3,"meta":{"a":[1]},"ok":true,"none":null,"a":[{"x":1}]}`,
			`a={"x":1};`, []string{"status", "count", "meta", "ok", "none"}},
		"unicode": {`{"a":[{"post":"héllo ✓ \ud83d\ude00"}]}`, `a={"post":"héllo ✓ \ud83d\ude00"};`, nil},
	}
	for name, tc := range tests {
		for rname, mk := range readers {
			t.Run(name+"/"+rname, func(t *testing.T) {
				items, d := decodeAll(t, mk(tc.in))
				if got := itemsString(items); got != tc.want {
					t.Fatalf("items\n got %s\nwant %s", got, tc.want)
				}
				if fmt.Sprint(d.Skipped()) != fmt.Sprint(tc.skipped) {
					t.Fatalf("skipped %v, want %v", d.Skipped(), tc.skipped)
				}
			})
		}
	}
}

func TestDecodeMalformed(t *testing.T) {
	tests := map[string]string{
		"empty":                "",
		"blank":                "  \n",
		"array":                `[{"action":"social"}]`,
		"null":                 `null`,
		"item not object":      `{"a":[1]}`,
		"item is string":       `{"a":["{}"]}`,
		"key not string":       `{a:[{}]}`,
		"missing colon":        `{"a" [{}]}`,
		"missing comma items":  `{"a":[{} {}]}`,
		"missing comma member": `{"a":[] "b":[]}`,
		"trailing comma":       `{"a":[{},]}`,
		"leading comma":        `{"a":[,{}]}`,
		"no value":             `{"a":,"b":[]}`,
		"truncated item":       `{"a":[{"x":1`,
		"truncated string":     `{"a":[{"s":"abc`,
		"truncated array":      `{"a":[{}`,
		"truncated object":     `{"a":[{}]`,
		"trailing data":        `{"a":[{}]} x`,
		"two objects":          `{}{}`,
		"html error page":      `<html><body>502 Bad Gateway</body></html>`,
		"invalid payload":      `{"a":[{"x":tru}]}`,
		"bad escape":           `{"a":[{"s":"\x"}]}`,
		"invalid member value": `{"n":01,"a":[]}`,
		"truncated literal":    `{"ok":tr`,
	}
	for name, in := range tests {
		for rname, mk := range readers {
			t.Run(name+"/"+rname, func(t *testing.T) {
				d := NewDecoder(mk(in), 0)
				var err error
				for range 10 {
					if _, err = d.Next(); err != nil {
						break
					}
				}
				if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "at byte") {
					t.Fatalf("err = %v, want ErrMalformed saying where", err)
				}
				if _, again := d.Next(); again != err {
					t.Fatalf("second Next = %v, want the same error", again)
				}
			})
		}
	}
}

func TestDecodeReaderError(t *testing.T) {
	boom := errors.New("connection reset")
	d := NewDecoder(io.MultiReader(strings.NewReader(`{"a":[{"x":1},{"y"`), iotest.ErrReader(boom)), 0)
	if it, err := d.Next(); err != nil || string(it.Data) != `{"x":1}` {
		t.Fatalf("first item %s, %v", it.Data, err)
	}
	_, err := d.Next()
	if !errors.Is(err, boom) || errors.Is(err, ErrMalformed) {
		t.Fatalf("err = %v, want the reader's error, not ErrMalformed", err)
	}
}

func TestDecodeItemTooLarge(t *testing.T) {
	big := `{"a":[{"s":"` + strings.Repeat("x", 2*readSize) + `"}]}`
	d := NewDecoder(strings.NewReader(big), readSize)
	if _, err := d.Next(); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("err = %v, want ErrMalformed for a payload over the limit", err)
	}
	// Below the limit, a payload larger than the read buffer is fine.
	d = NewDecoder(strings.NewReader(big), 0)
	if it, err := d.Next(); err != nil || len(it.Data) != 2*readSize+8 {
		t.Fatalf("large item: %d bytes, %v", len(it.Data), err)
	}
}

// TestDecodeStreams checks that a response much larger than the buffer is read with the
// buffer at its initial size, and that items stay intact after later reads.
func TestDecodeStreams(t *testing.T) {
	const n = 20000
	pr, pw := io.Pipe()
	go func() {
		fmt.Fprint(pw, `{"social":[`)
		for i := range n {
			if i > 0 {
				fmt.Fprint(pw, ",")
			}
			fmt.Fprintf(pw, `{"action":"social","hookId":"h%d","pad":"%s"}`, i, strings.Repeat("p", 500))
		}
		fmt.Fprint(pw, `]}`)
		pw.Close()
	}()
	items, d := decodeAll(t, pr)
	if len(items) != n {
		t.Fatalf("got %d items, want %d", len(items), n)
	}
	if len(d.buf) != readSize {
		t.Fatalf("buffer grew to %d bytes for items of 500", len(d.buf))
	}
	for i, it := range items {
		if !bytes.HasPrefix(it.Data, fmt.Appendf(nil, `{"action":"social","hookId":"h%d",`, i)) || !json.Valid(it.Data) {
			t.Fatalf("item %d corrupted: %.60s", i, it.Data)
		}
	}
}
