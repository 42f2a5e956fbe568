package output

import (
	"encoding/binary"
	"unicode/utf8"
)

// maxDepth bounds the nesting of a line taken as a JSON object; a deeper one is written as a
// message, which is still valid JSON.
const maxDepth = 512

// object reports whether b, less the whitespace around it, is exactly one JSON object (RFC
// 8259) in valid UTF-8: start and end are the offsets of its braces, empty that it has no
// members. A worker's line is kept as it is only when this holds, so that adding a field
// cannot turn it into something a log collector rejects.
func object(b []byte) (start, end int, empty, ok bool) {
	s := scan{b: b}
	s.space()
	start = s.i
	if s.peek() != '{' || !s.value(0) {
		return 0, 0, false, false
	}
	end = s.i - 1
	s.space()
	if s.i != len(b) {
		return 0, 0, false, false
	}
	s.i = start + 1
	s.space()
	return start, end, s.i == end, true
}

// scan is a cursor over one line; each method consumes what it recognises and reports whether
// it was well formed.
type scan struct {
	b []byte
	i int
}

func (s *scan) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scan) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scan) value(depth int) bool {
	if depth > maxDepth {
		return false
	}
	switch c := s.peek(); {
	case c == '{':
		return s.members(depth)
	case c == '[':
		return s.elements(depth)
	case c == '"':
		return s.str()
	case c == '-' || isDigit(c):
		return s.number()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	}
	return false
}

func (s *scan) members(depth int) bool {
	s.i++ // {
	s.space()
	if s.peek() == '}' {
		s.i++
		return true
	}
	for {
		if s.peek() != '"' || !s.str() {
			return false
		}
		s.space()
		if s.peek() != ':' {
			return false
		}
		s.i++
		s.space()
		if !s.value(depth + 1) {
			return false
		}
		s.space()
		switch s.peek() {
		case ',':
			s.i++
			s.space()
		case '}':
			s.i++
			return true
		default:
			return false
		}
	}
}

func (s *scan) elements(depth int) bool {
	s.i++ // [
	s.space()
	if s.peek() == ']' {
		s.i++
		return true
	}
	for {
		if !s.value(depth + 1) {
			return false
		}
		s.space()
		switch s.peek() {
		case ',':
			s.i++
			s.space()
		case ']':
			s.i++
			return true
		default:
			return false
		}
	}
}

func (s *scan) str() bool {
	s.i++ // "
	for s.i < len(s.b) {
		s.i += plainPrefix(s.b[s.i:])
		if s.i == len(s.b) {
			return false
		}
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return true
		case c == '\\':
			if s.i+1 >= len(s.b) {
				return false
			}
			switch s.b[s.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i += 2
			case 'u':
				if s.i+6 > len(s.b) {
					return false
				}
				for _, h := range s.b[s.i+2 : s.i+6] {
					if !isHex(h) {
						return false
					}
				}
				s.i += 6
			default:
				return false
			}
		case c < 0x20:
			return false
		default: // the first byte of a multi-byte sequence, or not UTF-8
			r, n := utf8.DecodeRune(s.b[s.i:])
			if r == utf8.RuneError && n == 1 {
				return false
			}
			s.i += n
		}
	}
	return false
}

func (s *scan) number() bool {
	if s.peek() == '-' {
		s.i++
	}
	switch {
	case s.peek() == '0':
		s.i++
	case isDigit(s.peek()):
		s.digits()
	default:
		return false
	}
	if s.peek() == '.' {
		s.i++
		if !isDigit(s.peek()) {
			return false
		}
		s.digits()
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.i++
		if c := s.peek(); c == '+' || c == '-' {
			s.i++
		}
		if !isDigit(s.peek()) {
			return false
		}
		s.digits()
	}
	return true
}

func (s *scan) digits() {
	for isDigit(s.peek()) {
		s.i++
	}
}

func (s *scan) literal(word string) bool {
	if len(s.b)-s.i < len(word) || string(s.b[s.i:s.i+len(word)]) != word {
		return false
	}
	s.i += len(word)
	return true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isHex(c byte) bool { return isDigit(c) || 'a' <= c|0x20 && c|0x20 <= 'f' }

// plain holds the bytes that stand for themselves inside a JSON string: printable ASCII but
// the quote and the backslash.
var plain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// plainPrefix is how many bytes at the start of b are plain, looking at eight at a time while
// it can: a word holds none but plain bytes when none is below 0x20, a quote, a backslash or
// at least 0x80.
func plainPrefix(b []byte) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	zero := func(w uint64) uint64 { return (w - ones) & ^w & highs } // non-zero iff a byte of w is 0
	i := 0
	for ; i+8 <= len(b); i += 8 {
		w := binary.LittleEndian.Uint64(b[i:])
		if (w-ones*0x20)&^w&highs|zero(w^(ones*'"'))|zero(w^(ones*'\\'))|w&highs != 0 {
			break
		}
	}
	for i < len(b) && plain[b[i]] {
		i++
	}
	return i
}

const hex = "0123456789abcdef"

// appendString appends b as the contents of a JSON string (without the quotes), any bytes:
// control characters escaped, each byte that is not UTF-8 as U+FFFD, as encoding/json does.
func appendString(dst, b []byte) []byte {
	start := 0
	for i := 0; i < len(b); {
		if i += plainPrefix(b[i:]); i == len(b) {
			break
		}
		c := b[i]
		if c >= utf8.RuneSelf {
			r, n := utf8.DecodeRune(b[i:])
			if r != utf8.RuneError || n != 1 {
				i += n
				continue
			}
			dst = append(append(dst, b[start:i]...), `\ufffd`...)
		} else {
			dst = append(dst, b[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, `\n`...)
			case '\r':
				dst = append(dst, `\r`...)
			case '\t':
				dst = append(dst, `\t`...)
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
		}
		i++
		start = i
	}
	return append(dst, b[start:]...)
}
