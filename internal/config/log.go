package config

import (
	"fmt"
	"log/slog"
	"strings"
)

// ParseLogLevel maps debug, info, warn and error to slog levels.
func ParseLogLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(s))); err != nil {
		return 0, fmt.Errorf("log_level: %q is not one of debug, info, warn, error", s)
	}
	return l, nil
}
