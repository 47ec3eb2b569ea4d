package main

import "strings"

// carriedNote marks a section taken over from the previous report.
const carriedNote = "_Kept from the previous report: bench/out/ holds no results for this section; `%s` measures it again._"

// previous is the report being replaced. bench/out/ is not committed and
// each benchmark writes only its own files there, so a report made after
// one benchmark would otherwise drop every other section; a section whose
// results are missing is kept as the previous report had it, marked.
type previous struct{ text string }

// section returns the part of the report from the heading line that starts
// with heading ("## Steady state", "### Failover") up to the next heading of
// the same or a higher level, and of a "###" part also up to the lines its
// "##" section ends with ("Reproduce: ", "Runs whose check failed"). within,
// if not empty, is the "##" heading to look under.
func (p previous) section(within, heading string) (string, bool) {
	text := p.text
	if within != "" {
		s, ok := previous{text: p.text}.section("", within)
		if !ok {
			return "", false
		}
		text = s
	}
	level := heading[:strings.IndexByte(heading, ' ')+1] // "## " or "### "
	var out []string
	in := false
	for _, l := range strings.Split(text, "\n") {
		if in {
			end := strings.HasPrefix(l, "# ") || strings.HasPrefix(l, "## ") ||
				(level == "### " && (strings.HasPrefix(l, "### ") || strings.HasPrefix(l, "Reproduce: ") ||
					strings.HasPrefix(l, "Runs whose check failed")))
			if end {
				break
			}
			out = append(out, l)
			continue
		}
		if strings.HasPrefix(l, heading) {
			in = true
			out = append(out, l)
		}
	}
	if !in {
		return "", false
	}
	return strings.TrimSpace(strings.Join(out, "\n")), true
}

// keep writes the previous report's section under heading (within the "##"
// section within, if not empty), marked as kept, or says that it was not
// measured and how to measure it.
func (p previous) keep(w func(string, ...any), within, heading, cmd string) {
	s, ok := p.section(within, heading)
	if !ok {
		if strings.HasPrefix(heading, "## ") {
			w("%s\n\nNot measured: `%s`.\n\n", heading, cmd)
		} else {
			w("%s\n\nNot measured in this run: `%s`.\n\n", heading, cmd)
		}
		return
	}
	title, body, _ := strings.Cut(s, "\n")
	body = strings.TrimSpace(body)
	// Already marked when kept before: one note is enough.
	if !strings.HasPrefix(body, "_Kept from the previous report") {
		body = strings.TrimSpace(strings.ReplaceAll(carriedNote, "%s", cmd) + "\n\n" + body)
	}
	w("%s\n\n%s\n\n", title, body)
}
