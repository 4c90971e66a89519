# pukaipu's system-wide Qtile configuration (/etc/xdg/qtile/config.py).
#
# Qtile 0.37 uses $XDG_CONFIG_HOME/qtile/config.py when it exists
# (XDG_CONFIG_HOME=/data/home/.config in pukaipu, i.e. ~/.config of the
# user's home), and only otherwise this file. To customise: copy this file
# to ~/.config/qtile/config.py and edit it there.
#
# Deliberately plain: no wallpaper image (loading one starts qtile's glycin
# image loader, which tries to sandbox itself with bwrap and is refused
# inside pukaipu's sandbox), no widgets that poll hardware, D-Bus or the
# network (none of those exist in the container).
from libqtile import bar, layout, widget
from libqtile.config import Click, Drag, Group, Key, Match, Screen
from libqtile.lazy import lazy

mod = "mod4"
terminal = "xterm"
browser = "/usr/lib/pukaipu/browser"

keys = [
    Key([mod], "h", lazy.layout.left(), desc="Focus left"),
    Key([mod], "l", lazy.layout.right(), desc="Focus right"),
    Key([mod], "j", lazy.layout.down(), desc="Focus down"),
    Key([mod], "k", lazy.layout.up(), desc="Focus up"),
    Key([mod], "space", lazy.layout.next(), desc="Focus the next window"),
    Key([mod, "shift"], "h", lazy.layout.shuffle_left(), desc="Move window left"),
    Key([mod, "shift"], "l", lazy.layout.shuffle_right(), desc="Move window right"),
    Key([mod, "shift"], "j", lazy.layout.shuffle_down(), desc="Move window down"),
    Key([mod, "shift"], "k", lazy.layout.shuffle_up(), desc="Move window up"),
    Key([mod, "control"], "h", lazy.layout.grow_left(), desc="Grow window left"),
    Key([mod, "control"], "l", lazy.layout.grow_right(), desc="Grow window right"),
    Key([mod, "control"], "j", lazy.layout.grow_down(), desc="Grow window down"),
    Key([mod, "control"], "k", lazy.layout.grow_up(), desc="Grow window up"),
    Key([mod], "n", lazy.layout.normalize(), desc="Reset window sizes"),
    Key([mod], "Return", lazy.spawn(terminal), desc="Terminal"),
    Key([mod], "b", lazy.spawn(browser), desc="Browser"),
    Key([mod], "Tab", lazy.next_layout(), desc="Next layout"),
    Key([mod], "w", lazy.window.kill(), desc="Close the focused window"),
    Key([mod], "f", lazy.window.toggle_fullscreen(), desc="Toggle fullscreen"),
    Key([mod], "t", lazy.window.toggle_floating(), desc="Toggle floating"),
    Key([mod, "control"], "r", lazy.reload_config(), desc="Reload the config"),
    Key([mod], "r", lazy.spawncmd(), desc="Run a command"),
]

groups = [Group(i) for i in "123456789"]
for g in groups:
    keys += [
        Key([mod], g.name, lazy.group[g.name].toscreen(), desc=f"Go to group {g.name}"),
        Key([mod, "shift"], g.name, lazy.window.togroup(g.name, switch_group=True),
            desc=f"Move the window to group {g.name}"),
    ]

layouts = [
    layout.Max(),
    layout.Columns(border_focus="#5e81ac", border_normal="#3b4252", border_width=2),
]

widget_defaults = dict(font="DejaVu Sans", fontsize=13, padding=4)
extension_defaults = widget_defaults.copy()

screens = [
    Screen(
        top=bar.Bar(
            [
                widget.GroupBox(highlight_method="block", this_current_screen_border="#5e81ac"),
                widget.CurrentLayout(),
                widget.Prompt(),
                widget.WindowName(),
                widget.Clock(format="%Y-%m-%d %H:%M"),
            ],
            26,
            background="#2e3440",
        ),
        background="#3b4252",
    ),
]

mouse = [
    Drag([mod], "Button1", lazy.window.set_position_floating(), start=lazy.window.get_position()),
    Drag([mod], "Button3", lazy.window.set_size_floating(), start=lazy.window.get_size()),
    Click([mod], "Button2", lazy.window.bring_to_front()),
]

dgroups_key_binder = None
dgroups_app_rules = []
follow_mouse_focus = True
bring_front_click = False
floats_kept_above = True
cursor_warp = False
floating_layout = layout.Floating(
    float_rules=[*layout.Floating.default_float_rules, Match(title="pinentry")]
)
auto_fullscreen = True
focus_on_window_activation = "smart"
reconfigure_screens = True
auto_minimize = True
wmname = "LG3D"
