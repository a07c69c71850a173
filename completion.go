package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

// Shell completion is urfave/cli's: with EnableBashCompletion the command
// answers `--generate-bash-completion` with the commands and flags that may
// come next, and the scripts below (urfave/cli v2's autocomplete/
// bash_autocomplete and zsh_autocomplete, MIT licence, with PROG set to
// s3mount) ask it. Fish's script is generated from the commands by
// App.ToFishCompletion.

const bashCompletion = `# bash completion for s3mount (urfave/cli v2 autocomplete/bash_autocomplete)
_cli_init_completion() {
  COMPREPLY=()
  _get_comp_words_by_ref "$@" cur prev words cword
}

_s3mount_bash_autocomplete() {
  if [[ "${COMP_WORDS[0]}" != "source" ]]; then
    local cur opts base words
    COMPREPLY=()
    cur="${COMP_WORDS[COMP_CWORD]}"
    if declare -F _init_completion >/dev/null 2>&1; then
      _init_completion -n "=:" || return
    else
      _cli_init_completion -n "=:" || return
    fi
    words=("${words[@]:0:$cword}")
    if [[ "$cur" == "-"* ]]; then
      requestComp="${words[*]} ${cur} --generate-bash-completion"
    else
      requestComp="${words[*]} --generate-bash-completion"
    fi
    opts=$(eval "${requestComp}" 2>/dev/null)
    COMPREPLY=($(compgen -W "${opts}" -- ${cur}))
    return 0
  fi
}

complete -o bashdefault -o default -o nospace -F _s3mount_bash_autocomplete s3mount
`

const zshCompletion = `#compdef s3mount
# zsh completion for s3mount (urfave/cli v2 autocomplete/zsh_autocomplete)

_s3mount_zsh_autocomplete() {
  local -a opts
  local cur
  cur=${words[-1]}
  if [[ "$cur" == "-"* ]]; then
    opts=("${(@f)$(${words[@]:0:#words[@]-1} ${cur} --generate-bash-completion)}")
  else
    opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion)}")
  fi

  if [[ "${opts[1]}" != "" ]]; then
    _describe 'values' opts
  else
    _files
  fi
}

compdef _s3mount_zsh_autocomplete s3mount
`

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print the shell completion script for bash, zsh or fish",
		ArgsUsage: "bash|zsh|fish",
		Description: "Install it where the shell looks (make install does):\n" +
			"  s3mount completion bash > /usr/share/bash-completion/completions/s3mount\n" +
			"  s3mount completion zsh  > /usr/share/zsh/vendor-completions/_s3mount\n" +
			"  s3mount completion fish > /usr/share/fish/vendor_completions.d/s3mount.fish\n" +
			"or try it at once: source <(s3mount completion bash)",
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("completion needs one shell: bash, zsh or fish (got %s)", arguments(c.NArg()))
			}
			var script string
			switch shell := c.Args().First(); shell {
			case "bash":
				script = bashCompletion
			case "zsh":
				script = zshCompletion
			case "fish":
				var err error
				if script, err = c.App.ToFishCompletion(); err != nil {
					return err
				}
			default:
				return fmt.Errorf("completion: %q is not bash, zsh or fish", shell)
			}
			_, err := fmt.Fprint(c.App.Writer, script)
			return err
		},
	}
}

// manCommand prints the man page, s3mount(1), generated from the commands
// and flags (App.ToMan, go-md2man); `make man` writes it to bin/s3mount.1.
func manCommand() *cli.Command {
	return &cli.Command{
		Name:   "man",
		Usage:  "print the man page (troff), generated from the commands and flags",
		Hidden: true,
		Action: func(c *cli.Context) error {
			page, err := c.App.ToManWithSection(1)
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(c.App.Writer, strings.TrimLeft(page, "\n"))
			return err
		},
	}
}
