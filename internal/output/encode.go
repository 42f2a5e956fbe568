package output

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// MaxLine is the longest line written whole. A longer one is written as pieces of at most
// MaxLine bytes, each cut where a UTF-8 character begins, so every piece is valid on its own.
const MaxLine = 64 << 10

// Label names the worker a line came from. Slot is Template for a template (NARWHAL_PRELOAD),
// which has no slot: its lines are labelled "template gen=3 pid=9 | " (text) or
// "worker":{"template":true,"generation":3,"pid":9} (json).
type Label struct{ Slot, Generation, PID int }

// Template is the Slot of a template's lines.
const Template = -1

// encoder labels the lines of one stream of one worker.
type encoder struct {
	json   bool
	prefix []byte // text: "slot=0 gen=3 pid=41 | "; json: `"worker":{…}`
	stream []byte // json: `,"stream":"stdout","msg":"`
	now    func() time.Time
	stamp  []byte // json: `{"time":"…",` shared by the lines of one batch, empty until needed
}

func newEncoder(json bool, l Label, stream string, now func() time.Time) *encoder {
	e := &encoder{json: json, now: now}
	slot, jsonSlot := "slot="+strconv.Itoa(l.Slot), `"slot":`+strconv.Itoa(l.Slot)
	if l.Slot == Template {
		slot, jsonSlot = "template", `"template":true`
	}
	if !json {
		e.prefix = []byte(slot + " gen=" + strconv.Itoa(l.Generation) +
			" pid=" + strconv.Itoa(l.PID) + " | ")
		return e
	}
	e.prefix = []byte(`"worker":{` + jsonSlot + `,"generation":` + strconv.Itoa(l.Generation) +
		`,"pid":` + strconv.Itoa(l.PID) + `}`)
	e.stream = []byte(`,"stream":"` + stream + `","msg":"`)
	return e
}

// batch starts the lines of one read; they share one time.
func (e *encoder) batch() { e.stamp = e.stamp[:0] }

// line appends b as one labelled line. A piece is part of a line longer than MaxLine, and
// partial says it is not the last.
func (e *encoder) line(dst, b []byte, piece, partial bool) []byte {
	if !e.json {
		dst = append(dst, e.prefix...)
		return append(append(dst, b...), '\n')
	}
	if !piece {
		if start, end, empty, ok := object(b); ok {
			if empty {
				dst = append(dst, '{')
			} else {
				dst = append(append(dst, b[start:end]...), ',')
			}
			dst = append(dst, e.prefix...)
			return append(dst, '}', '\n')
		}
	}
	if len(e.stamp) == 0 {
		e.stamp = append(e.stamp, `{"time":"`...)
		e.stamp = e.now().AppendFormat(e.stamp, time.RFC3339Nano) // as narwhal's own log lines
		e.stamp = append(e.stamp, `",`...)
	}
	dst = append(dst, e.stamp...)
	dst = append(dst, e.prefix...)
	dst = append(dst, e.stream...)
	dst = appendString(dst, b)
	if partial {
		return append(dst, `","partial":true}`+"\n"...)
	}
	return append(dst, `"}`+"\n"...)
}

// cut is where a piece of b, a line longer than MaxLine, ends: at MaxLine, or before the
// UTF-8 character that MaxLine would split.
func cut(b []byte) int {
	for i := MaxLine; i > MaxLine-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			return i
		}
	}
	return MaxLine
}
