package main

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// runApp runs the command line with args and returns what it printed.
// os.Args is args too for the run: urfave/cli's completion reads it.
func runApp(t *testing.T, args ...string) (string, error) {
	t.Helper()
	app := newApp()
	var out bytes.Buffer
	app.Writer, app.ErrWriter = &out, &out
	argv := append([]string{"s3mount"}, args...)
	saved := os.Args
	os.Args = argv
	defer func() { os.Args = saved }()
	err := app.Run(argv)
	return out.String(), err
}

func TestCompletionScripts(t *testing.T) {
	bashPath, err := exec.LookPath("bash")
	if err != nil {
		t.Fatalf("bash is needed to check the bash script: %v", err)
	}
	for shell, want := range map[string]string{
		"bash": "complete -o bashdefault -o default -o nospace -F _s3mount_bash_autocomplete s3mount",
		"zsh":  "compdef _s3mount_zsh_autocomplete s3mount",
		"fish": "complete -r -c s3mount -n '__fish_s3mount_no_subcommand' -a 'mount'",
	} {
		out, err := runApp(t, "completion", shell)
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("completion %s: %v; output lacks %q:\n%s", shell, err, want, out)
		}
		if shell == "bash" {
			cmd := exec.Command(bashPath, "-n")
			cmd.Stdin = strings.NewReader(out)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("bash -n of the bash completion: %v\n%s", err, b)
			}
		}
	}
	if _, err := runApp(t, "completion", "tcsh"); err == nil || !strings.Contains(err.Error(), "tcsh") {
		t.Errorf("completion tcsh: %v, want an error naming it", err)
	}
	// What the scripts ask: the commands, then a command's flags.
	out, _ := runApp(t, "--generate-bash-completion")
	for _, c := range []string{"mount", "unmount", "check", "completion"} {
		if !strings.Contains(out, c+"\n") {
			t.Errorf("completion of the command lacks %s:\n%s", c, out)
		}
	}
	out, _ = runApp(t, "mount", "--met", "--generate-bash-completion")
	if !strings.Contains(out, "--metrics-addr") || strings.Contains(out, "--endpoint-url") {
		t.Errorf("completion of mount --met is not --metrics-addr alone:\n%s", out)
	}
}

func TestManPage(t *testing.T) {
	out, err := runApp(t, "man")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{".TH s3mount 1", ".SH DESCRIPTION", "--metrics-addr", "--log-format", "unmount", "completion"} {
		if !strings.Contains(out, want) {
			t.Errorf("man page lacks %q", want)
		}
	}
}
