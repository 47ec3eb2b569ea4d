package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
)

// ParseDockerfile reads the definition of the Dockerfile's final stage: the
// destination of its one COPY of the binary, USER, EXPOSE, ENTRYPOINT and CMD
// (exec form only: the shell form needs a shell the image does not have).
func ParseDockerfile(src string) (Definition, error) {
	var def Definition
	var copies int
	lines := strings.Split(strings.ReplaceAll(src, "\\\n", " "), "\n")
	last := 0 // only the final stage is the image
	for i, line := range lines {
		if word, _, _ := strings.Cut(strings.TrimSpace(line), " "); strings.EqualFold(word, "FROM") {
			last = i
		}
	}
	for i := last; i < len(lines); i++ {
		line := lines[i]
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		word, rest, _ := strings.Cut(line, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(word) {
		case "COPY":
			fields := strings.Fields(rest)
			var args []string
			for _, f := range fields {
				if !strings.HasPrefix(f, "--") {
					args = append(args, f)
				}
			}
			if len(args) != 2 {
				return def, fmt.Errorf("line %d: COPY of one file expected, got %q", i+1, line)
			}
			def.Path, copies = args[1], copies+1
			if strings.HasSuffix(def.Path, "/") {
				def.Path = path.Join(def.Path, path.Base(args[0]))
			}
		case "USER":
			def.User = rest
		case "EXPOSE":
			for _, p := range strings.Fields(rest) {
				if !strings.Contains(p, "/") {
					p += "/tcp"
				}
				def.Expose = append(def.Expose, p)
			}
		case "ENTRYPOINT", "CMD":
			var v []string
			if err := json.Unmarshal([]byte(rest), &v); err != nil {
				return def, fmt.Errorf("line %d: %s must be in exec form (a JSON array): %w", i+1, word, err)
			}
			if strings.ToUpper(word) == "ENTRYPOINT" {
				def.Entrypoint = v
			} else {
				def.Cmd = v
			}
		}
	}
	switch {
	case copies != 1:
		return def, fmt.Errorf("the final stage must COPY exactly one file (the binary), it has %d COPY lines", copies)
	case def.User == "":
		return def, errors.New("the final stage has no USER: the image would run as root")
	case len(def.Entrypoint) == 0:
		return def, errors.New("the final stage has no ENTRYPOINT")
	}
	return def, nil
}
