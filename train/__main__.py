from .engine import get_args_parser, main

if __name__ == "__main__":
    args = get_args_parser().parse_args()
    try:
        main(args)
    except ValueError as e:  # the user's mistakes (unknown preset, bad data folder, bad checkpoint): no traceback
        raise SystemExit(f"error: {e}") from None
