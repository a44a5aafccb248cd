"""The canonical example every dataset format is converted to.

Readers and format converters produce rows with exactly these columns; templates and the per-stage
processors consume nothing else. The columns are plain lists/dicts/strings so they live in Arrow
(HF datasets) without pickling.

  prompt    list of {"role", "content"}: the conversation up to the trained response. Roles alternate
            user|observation, assistant|function, starting with user.
  response  list of {"role", "content"}:
              sft / pt / unsupervised: [assistant] (empty for pt text and for unlabeled rows)
              ranking:                 [chosen, rejected]
              kto:                     [response, {"content": ""}] when desirable,
                                       [{"content": ""}, response] when undesirable
  system    system prompt ("" when none)
  tools     tool descriptions as a JSON string ("" when none)
  images / videos / audios   media paths (already resolved against media_dir), [] when none
"""

from enum import Enum


class Role(str, Enum):
    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"
    FUNCTION = "function"
    OBSERVATION = "observation"


COLUMNS = ("prompt", "response", "system", "tools", "images", "videos", "audios")

# Roles allowed at even (0, 2, ...) and odd (1, 3, ...) positions of prompt + response.
EVEN_ROLES = (Role.USER.value, Role.OBSERVATION.value)
ODD_ROLES = (Role.ASSISTANT.value, Role.FUNCTION.value)

IGNORE_INDEX = -100
