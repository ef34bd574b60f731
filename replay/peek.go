package replay

import "bytes"

// peek returns a payload's top-level hookId and created without validating or converting it,
// so an event the stream already holds costs a scan rather than a schema.NewEvent. It
// reports ok only when both are non-empty strings without escapes and no top-level key is
// escaped; then, for a valid payload, hookID is the event id schema.NewEvent would give (a
// non-empty string hookId is the id) and created is its created. Otherwise, and for invalid
// JSON, the caller must use schema.NewEvent. As in encoding/json, a later duplicate key wins.
func peek(b []byte) (hookID, created []byte, ok bool) {
	var key []byte
	depth, afterKey := 0, false
	set := func(v []byte) {
		switch string(key) {
		case "hookId":
			hookID = v
		case "created":
			created = v
		}
	}
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case ' ', '\t', '\n', '\r', ':', ',':
		case '"':
			end := closeQuote(b, i+1)
			if end < 0 {
				return nil, nil, false
			}
			s := b[i+1 : end]
			i = end
			if depth != 1 {
				continue
			}
			if !afterKey {
				if bytes.IndexByte(s, '\\') >= 0 {
					return nil, nil, false // an escaped key may spell hookId or created
				}
				key, afterKey = s, true
				continue
			}
			afterKey = false
			if bytes.IndexByte(s, '\\') >= 0 {
				s = nil // an escaped value: too rare to unescape here
			}
			set(s)
		case '{', '[':
			if depth == 1 && afterKey {
				afterKey = false
				set(nil) // not a string: no hookId or created
			}
			depth++
		case '}', ']':
			depth--
		default: // a number, true, false or null
			if depth == 1 && afterKey {
				afterKey = false
				set(nil)
			}
			for i+1 < len(b) && !endsLiteral(b[i+1]) {
				i++
			}
		}
	}
	return hookID, created, len(hookID) > 0 && len(created) > 0
}

func endsLiteral(c byte) bool {
	switch c {
	case ',', '}', ']', ' ', '\t', '\n', '\r':
		return true
	}
	return false
}
