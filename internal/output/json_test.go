package output

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestObject(t *testing.T) {
	for _, tc := range []struct {
		in    string
		ok    bool
		empty bool
	}{
		{`{}`, true, true},
		{` { } `, true, true},
		{`{"level":"info","msg":"hi"}`, true, false},
		{"\t{\"a\":[1,-2.5e+3,true,false,null,{\"b\":\"\\u00e9\\n\"}]}\r", true, false},
		{`{"é":"ü"}`, true, false},
		{`{"a":1,}`, false, false},
		{`{"a":01}`, false, false},
		{`{"a":1.}`, false, false},
		{`{"a":"\x"}`, false, false},
		{`{"a":"` + "\x01" + `"}`, false, false},
		{`{"a":"` + "\xff" + `"}`, false, false},
		{`{"a":1} {"b":2}`, false, false},
		{`{"a":1}x`, false, false},
		{`[1,2]`, false, false},
		{`"{}"`, false, false},
		{`{"a"}`, false, false},
		{`{"a":tru}`, false, false},
		{`{`, false, false},
		{``, false, false},
		{`plain text`, false, false},
		{`{` + strings.Repeat(`"a":[`, maxDepth) + strings.Repeat(`]`, maxDepth) + `}`, false, false},
	} {
		start, end, empty, ok := object([]byte(tc.in))
		if ok != tc.ok || empty != tc.empty {
			t.Errorf("object(%q) = ok %v empty %v, want %v %v", tc.in, ok, empty, tc.ok, tc.empty)
			continue
		}
		if ok && (tc.in[start] != '{' || tc.in[end] != '}' || strings.TrimSpace(tc.in[start:end+1]) != strings.TrimSpace(tc.in)) {
			t.Errorf("object(%q): braces at %d and %d", tc.in, start, end)
		}
	}
}

func TestAppendString(t *testing.T) {
	for in, want := range map[string]string{
		"plain":                  `plain`,
		`say "hi" \ bye`:         `say \"hi\" \\ bye`,
		"tab\tcr\rnl\nbell\x07":  `tab\tcr\rnl\nbell\u0007`,
		"é – 日本":                 "é – 日本",
		"bad \xff\xfe utf8 \xe2": `bad \ufffd\ufffd utf8 \ufffd`,
		"<html>&":                `<html>&`,
	} {
		if got := string(appendString(nil, []byte(in))); got != want {
			t.Errorf("appendString(%q) = %s, want %s", in, got, want)
		}
	}
}

// FuzzObject: object agrees with encoding/json on what is one valid JSON object, in valid
// UTF-8, and its braces are where a decoder finds them.
func FuzzObject(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, ` {"a":[1,{"b":null}],"c":"\u00e9"} `, `{"a":"` + "\xff" + `"}`,
		`{"a":1e5}`, `{"a":-0.5E-3}`, `[{}]`, `{"a":1}{}`, `{"a":"\ud800"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		start, end, empty, ok := object(b)
		want := json.Valid(b) && utf8.Valid(b) && bytes.HasPrefix(bytes.TrimLeft(b, " \t\r\n"), []byte("{"))
		deep := bytes.Count(b, []byte("{"))+bytes.Count(b, []byte("[")) > maxDepth
		if ok != want && !(deep && !ok) {
			t.Fatalf("object(%q) = %v, encoding/json says %v", b, ok, want)
		}
		if !ok {
			return
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b[start:end+1], &m); err != nil {
			t.Fatalf("object(%q): braces %d..%d hold no object: %v", b, start, end, err)
		}
		if empty != (len(m) == 0) {
			t.Fatalf("object(%q): empty = %v with %d members", b, empty, len(m))
		}
	})
}

// FuzzAppendString: any bytes come out as a JSON string that decodes to what encoding/json
// makes of them.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "a", "\"\\", "\x00\x1f\x7f", "\xff", "é\u2028", "\xe2\x82"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		quoted := append(append([]byte{'"'}, appendString(nil, b)...), '"')
		var got string
		if err := json.Unmarshal(quoted, &got); err != nil {
			t.Fatalf("appendString(%q) = %s: %v", b, quoted, err)
		}
		ref, _ := json.Marshal(string(b))
		var want string
		json.Unmarshal(ref, &want)
		if got != want || !utf8.Valid(quoted) {
			t.Fatalf("appendString(%q) decodes to %q, want %q", b, got, want)
		}
	})
}
