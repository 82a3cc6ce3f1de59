"""Client turns that disclose risk, and the safe reply the data gives them instead of a lecture.

A conversation where someone says they want to die and the reply explains attachment styles would
teach the model to talk past a disclosure. So every client turn (written by a generator or by the
offline templates) is checked here first; a disclosing turn is either answered with a safe,
responsive reply that points to help and ends the conversation (`risk: respond`), or the
conversation is cut before it (`risk: drop`). Both are counted in the build's stats.

The rules match disclosures, not words: a first-person statement of wanting to die or not wake up,
preparations (goodbyes, giving things away, "after I'm gone"), a question about means (lethal
amounts, heights, trains, weapons), an overdose taken or planned, self-harm, wanting to hurt
someone, violence, threats, sexual abuse or control happening to the person now, starving or
purging, and command voices or persecution beliefs. Talking about these topics in general, or a
childhood that was hard ("my dad drank and yelled at us"), is left alone: that is what a trauma
educator's listeners talk about. Rules miss new phrasings, so a character 3-5-gram classifier trained
on disclosures written for this project (risk_examples/disclosures.jsonl) against ordinary
trauma-topic messages (evals/suites/trauma_ordinary.jsonl) adds what it is sure of
(`CLASSIFIER_THRESHOLD`); its kind is `unspecified`. Both are a floor; `datamodules/voice/judged.py`
adds a judge's verdict when one is configured.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path

KINDS = (
    "suicide",
    "means",
    "overdose",
    "self_harm",
    "harm_to_others",
    "abuse",
    "eating_disorder",
    "psychosis",
    "unspecified",  # the classifier's: a disclosure no rule names
)
DISCLOSURES = Path(__file__).parent / "risk_examples" / "disclosures.jsonl"
ORDINARY = Path(__file__).parents[2] / "evals" / "suites" / "trauma_ordinary.jsonl"
# Probability above which the classifier's verdict counts: 5-fold cross-validated on its own training
# sets it flags 0.8% of ordinary messages at 0.7 (11.5% at 0.5).
CLASSIFIER_THRESHOLD = 0.7
# Spellings of texting and hurried typing, made standard before the rules run.
SPELLINGS = {
    "wanna": "want to", "gonna": "going to", "dont": "don't", "cant": "can't", "wont": "won't",
    "im": "i'm", "ive": "i've", "id": "i'd", "ill": "i'll", "didnt": "didn't", "doesnt": "doesn't",
    "isnt": "isn't", "u": "you", "ur": "your", "pls": "please", "rn": "right now", "tmrw": "tomorrow",
}
_SPELLING = re.compile(r"\b(?:" + "|".join(SPELLINGS) + r")\b", re.IGNORECASE)
# The person speaking: "I", "I'm", "I've", "me", "my" (rules that need a first-person subject).
_I = r"\b(?:i|i'm|im|i am|i've|ive|i have|i'd|i'll|i was|i keep|i still|i just|i really|i sometimes|i often)\b"
_PILLS = (
    r"(?:pills|tablets|meds|medication|medicine|antidepressants?|paracetamol|acetaminophen|tylenol|"
    r"ibuprofen|codeine|aspirin|insulin|lithium|opioids?|oxy\w*|painkillers|prescription|sleeping pills|"
    r"doses?)"
)
_AMOUNT = (
    r"(?:all|whole|a lot of|lots of|loads of|too many|a handful|handful|a packet|packet|a bottle|bottle|"
    r"a box|box|double|triple|extra|a bunch|\d+|twenty|thirty|forty|fifty|a hundred|some of my|every)"
)
_PARTNER = (
    r"\b(?:he|she|they|my (?:\w+'s )?(?:husband|wife|partner|boyfriend|girlfriend|fianc[eé]e?|ex|dad|father|mum|mom|"
    r"mother|stepdad|stepmum|stepmom|stepfather|stepmother|brother|sister|uncle|aunt|carer|caregiver|son|"
    r"daughter|boss|landlord|flatmate|roommate)|someone(?: at home)?|somebody)"
)
_NOW = r"(?:last night|this morning|today|tonight|yesterday|just now|right now|again|this week|last week)"
_SOON = r"(?:tonight|tomorrow|this week(?:end)?|soon|next week)"


def _rules(*patterns: str) -> list[re.Pattern]:
    return [re.compile(p, re.IGNORECASE) for p in patterns]


# kind -> (why, pattern) in the order they are tried; the first match names the kind.
RULES: dict[str, list[tuple[str, list[re.Pattern]]]] = {
    "means": [
        (
            "asks how to kill oneself or how lethal a means is",
            _rules(
                r"\b(?:way|ways|how|method)\b[^.?!]{0,30}\b(?:to|do i|can i|could i)\s+(?:kill myself|die|end it|end it all|end everything|"
                r"end my life|commit suicide|bleed out|not wake up)\b",
                r"\bbleed(?:ing)? (?:out|to death)\b",
                r"\bnoose\b|\bligature\b|\b(?:bought|buy|got|have|tied|tie) (?:a|the|some) rope\b",
                r"\b(?:drive|driving|crash|crashing|steer|swerve|swerving)\b[^.?!]{0,25}\b(?:into|off)\b[^.?!]{0,15}"
                r"\b(?:a |the )?(?:tree|wall|bridge|oncoming|lorry|truck|cliff|river|traffic)\b",
                r"\b(?:painless|quickest|fastest|easiest|surest)\b[^.?!]{0,25}\b(?:way|method|die|death|kill)\b",
                r"\bhang(?:ing|ed)?\b(?!\s+(?:out|on|up|around|over|about))[^.?!]{0,25}"
                r"\b(?:painless|quick|hurt|how long|rope|noose)\b",
                r"\b(?:lethal|fatal|deadly)\b[^.?!]{0,20}\b(?:dose|amount|fall|height|level|overdose)\b",
                r"\bfor (?:a|the) (?:fall|jump|drop|dose|overdose) to be (?:fatal|lethal|deadly)\b",
                r"\b(?:how (?:many|much)|enough)\b[^.?!]{0,40}\b" + _PILLS + r"\b[^.?!]{0,40}"
                r"\b(?:enough|kill|die|fatal|lethal|not wake up|overdose|would it take)\b",
                r"\bhow (?:many|much)\b[^.?!]{0,40}\bwould it take\b",
                r"\bhow (?:many|much)\b[^.?!]{0,50}\b" + _PILLS + r"\b[^.?!]{0,30}\b(?:it would take|would take|to take)\b",
                r"\b(?:most|more|very) (?:dangerous|toxic|poisonous|deadly)\b[^.?!]{0,30}"
                r"\b(?:overdose|if you (?:drink|swallow|take|eat))\b",
                r"\b(?:poisonous|toxic|deadly) if (?:you |i )?(?:drink|swallow|take|eat|mix)\b",
                r"\b(?:die|dying|death) from (?:carbon monoxide|an overdose|hanging|poison|exhaust|gas|blood loss)\b",
                r"\b(?:carbon monoxide|exhaust fumes|charcoal)\b[^.?!]{0,40}\b(?:garage|car|tent|room|die|kill|how long)\b",
                r"\bhow deep\b[^.?!]{0,40}\b(?:cut|vein|artery|wrist)\b",
                r"\blook like an accident\b",
                r"\bcount(?:ing|ed)? (?:how many|my|the)\b[^.?!]{0,20}\b" + _PILLS + r"\b",
                r"\bwalk(?:ing)? into the (?:sea|ocean|river|lake|water)\b",
                r"\bstep(?:ping)? (?:off|in front of|out in front of)\b[^.?!]{0,20}\b(?:platform|ledge|edge|roof|bridge|train|"
                r"bus|traffic)\b",
                r"\b" + _PILLS + r"\b[^.?!]{0,40}\bjust in case\b",
                r"\b(?:tracks|train|bridge|ledge|roof|cliff|edge)\b[^.?!]{0,50}\bhow easy it would be\b",
                r"\b" + _PILLS + r"\b[^.?!]{0,30}\b(?:most )?(?:dangerous|lethal|deadly|fatal)\b(?! (?:for|to) (?:dogs|cats|pets))",
                r"\benough " + _PILLS + r"\b|\bdo it properly\b",
                r"\b(?:drive|driving|drove|steer|steering) (?:off|over) (?:a |the )?(?:[\w-]+ )?(?:road|cliff|edge|bridge|pier)\b",
                r"\bhow long (?:can|does|would|could|will) (?:someone|a person|you|i|it take)\b[^.?!]{0,30}"
                r"\b(?:survive without|to die|bleed|starve|to drown|suffocate)\b",
                r"\b(?:hit|reach|sever|slit)\b[^.?!]{0,20}\b(?:an? )?(?:artery|arteries|vein|veins)\b",
            ),
        ),
        (
            "looks for a place to jump or a train to step in front of",
            _rules(
                r"\b(?:highest|tallest|high(?:est)? enough|tall enough)\b[^.?!]{0,40}"
                r"\b(?:bridges?|buildings?|cliffs?|towers?|car ?parks?|parking (?:garage|structure)s?|roofs?|rooftops?|"
                r"balcon(?:y|ies)|floors?)\b",
                r"\b(?:bridges?|buildings?|cliffs?|towers?|car ?parks?|roofs?|rooftops?)\b[^.?!]{0,40}"
                r"\b(?:the )?(?:highest|tallest)\b",
                r"\b(?:no|without(?: a| any)?) (?:fences?|railings?|barriers?)\b",
                r"\bunfenced\b",
                r"\btrains?\b[^.?!]{0,50}\b(?:without stopping|don't stop|do not stop|non-?stop|at full speed)\b",
                r"\bjump(?:ing)? (?:off|from|in front of)\b",
                r"\b(?:step|stepping|walk|walking|throw myself|lie down) in front of (?:a|the) (?:train|bus|lorry|truck|car)\b",
                r"\b(?:edge of|on) the (?:platform|roof|ledge|tracks|railway line|cliff)\b",
                r"\b(?:bridge|cliff|tracks|train line|railway|rooftop|ledge|multi-storey)\b[^.?!]{0,40}"
                r"\b(?:keep thinking about|can't stop thinking about|drawn to|pulling me)\b",
            ),
        ),
        (
            "has or seeks a weapon to use on themself",
            _rules(
                r"\b(?:gun|pistol|rifle|shotgun|firearm)\b[^.?!]{0,60}\b(?:aim|quick|myself|end it|loaded|use it)\b",
                r"\bwhere (?:should|do|would) i aim\b",
            ),
        ),
    ],
    "overdose": [
        (
            "took, or is about to take, an overdose or a poison",
            _rules(
                r"\b(?:took|take|taken|taking|swallowed|swallow|had|downed|ate)\b[^.?!]{0,25}\b" + _AMOUNT
                + r"\b[^.?!]{0,25}\b" + _PILLS + r"\b(?! (?:for|from) (?:his|her|their|my|the) )",
                r"\b(?:take|took|swallow|swallowed)\s+all of them\b",
                r"\bswallowed\b[^.?!]{0,25}\b" + _PILLS + r"\b",
                r"\b(?:swallow|swallowing|take|taking)\b[^.?!]{0,15}\b(?:everything|all)\b[^.?!]{0,25}"
                r"\b(?:medicine cabinet|cupboard|bathroom cabinet|drawer|bottle|packet|prescription)\b",
                r"\b(?:stash|stockpile|hoard|supply|collection) of " + _PILLS + r"\b",
                r"\b" + _PILLS + r"\b[^.?!]{0,10}\b(?:saved|stockpiled|hidden away|put aside|stashed)\b",
                r"\b" + _PILLS + r"\b[^.?!]{0,15}\b(?:lined up|counted out|in front of me|in my hand)\b",
                r"\b(?:thinking|thought) (?:about|of) overdosing\b",
                r"\b(?:swallowed|swallowing|drank|drunk|drink|drinking|ingested|ate|eating)\b[^.?!]{0,25}\b(?:bleach|antifreeze|poison|"
                r"weedkiller|weed killer|pesticide|detergent|drain cleaner|rat poison|chemicals?)\b",
                r"\bi(?:'ve| have)? overdosed\b|\b(?:took|taken|had) an overdose\b|\boverdose on\b",
                r"\bin an overdose\b",
                r"\b(?:saving|stockpiling|hoarding|collecting|saved|stockpiled)\b[^.?!]{0,20}\b(?:up )?(?:my |them|"
                + _PILLS + r")",
            ),
        ),
    ],
    "suicide": [
        (
            "says they want to die or end their life",
            _rules(
                r"\b(?:kill(?:ing)? myself|take my (?:own )?life|taking my (?:own )?life|end(?:ing)? my (?:own )?life|"
                r"commit(?:ting)? suicide|suicidal|suicide (?:note|plan)|my suicide|thoughts? (?:of|about) suicide|"
                r"(?:thinking|thought) (?:about|of) suicide)\b",
                r"\b(?:planning|planned|plan|attempting|considering|contemplating) (?:my (?:own )?)?suicide\b",
                r"\bwant (?:it all|everything|all of (?:this|it)) to (?:stop|end|be over)\b",
                r"\b(?:stop|end|over)\b[^.?!]{0,5}\b(?:permanently|forever|for good)\b",
                r"\bready to (?:end (?:it|this|things|everything)|die|give up on (?:life|living))\b",
                r"\bdone (?:fighting|living|with (?:life|living|it all))\b",
                r"\b(?:except|other than|but) (?:dying|death|to die|ending it)\b",
                r"\bnever been born\b",
                r"\bif i (?:just )?(?:wasn't|weren't|was not|were not) (?:around|here|alive)\b",
                r"\bwish\b[^.?!]{0,40}\b(?:never|not) (?:come back|wake up|wake)\b",
                r"\b(?:sleep|asleep)\b[^.?!]{0,30}\b(?:never|not) (?:come back|wake up|wake)\b",
                r"\bstay(?:ing)? alive\b|\bbother (?:living|going on|being alive|waking up)\b",
                r"\b(?:no|any|the) point\b[^.?!]{0,15}\b(?:being here|being alive|living|existing|going on|carrying on|"
                r"me being)\b",
                r"\b(?:rather|prefer to) (?:be dead|die|not be alive|not exist|not be here)\b",
                r"\b(?:can't|cannot|don't|can not) see (?:a|any) (?:future|way forward|reason to go on)\b|\bno future for me\b",
                _I + r"[^.?!]{0,60}\b(?:end(?:ing)?|finish(?:ing)?) (?:it|it all|everything|things)\b(?!\s+(?:with|between|off))",
                r"\b(?:want|wanted|wanting|wish|going|ready|need|deserve) (?:to die|i (?:was|were) dead|to be dead)\b"
                r"(?! (?:of|from) (?:shame|embarrassment|laugh\w*|boredom|curiosity|cringe))",
                r"\b(?:think(?:ing)?|thought|fantasi[sz](?:e|ing)|dream(?:ing)?) (?:about|of) (?:just )?(?:overdosing|"
                r"jumping|hanging myself|crashing|drowning|shooting|dying|not being here|not existing|"
                r"killing myself|ending (?:it|it all|everything|my life)(?! with)|cutting(?! (?:off|down|back|out|ties|"
                r"contact|them|him|her|people|corners)))\b",
                r"\b(?:have|got|made|making) a plan\b[^.?!]{0,30}\b(?:do it|end it|die|kill|to go)\b",
                r"\bhow (?:i'd|i would|i will|i'll|i could) do it\b",
                r"\b(?:disappear(?:ing)?|vanish(?:ing)?|be gone)\s+(?:for good|forever|permanently)\b",
                r"\bfavou?r\b[^.?!]{0,30}\b(?:disappearing|dying|being gone|not being here|if i (?:died|was gone))\b",
                r"\b(?:don't|do not|no longer) want to (?:be alive|exist|live|be here|wake up|go on)\b",
                r"\b(?:tired|sick) of (?:existing|living|being alive|life)\b",
                r"\bwish (?:i|i'd) (?:had never been born|could (?:just )?(?:stop existing|die|disappear|vanish|"
                r"not exist|not wake up))\b",
                r"\b(?:want|wanted) to (?:just )?(?:disappear|vanish|stop existing) (?:forever|for good|and not)\b",
                r"\b(?:not|never|didn't|don't) wakes? up\b(?!\s+(?:until|till|in time|early|on time|rested|before))",
                r"\bsleep (?:for (?:a year|years|ever|months|weeks)|forever)\b",
                r"\b(?:never|not|nobody|no one) wakes? up from\b",
            ),
        ),
        (
            "says life is pointless or others would be better off without them",
            _rules(
                r"\bbetter off (?:without me|if i (?:was|were|wasn't|weren't)|with me (?:gone|dead)|dead)\b",
                r"\b(?:fine|better|happier|easier) without me\b",
                r"\b(?:easier|better)\b[^.?!]{0,30}\bif i (?:just )?(?:wasn't|weren't|was not|were not) (?:here|around|alive)\b",
                r"\bif i (?:was|were) (?:gone|dead|no longer here|not here|not around)\b",
                r"\b(?:notice|care|miss me|matter|be sad)\b[^.?!]{0,30}\bif i (?:just )?(?:died|disappeared|vanished|was gone|"
                r"were gone|wasn't here|weren't here|killed myself)\b",
                r"\b(?:happier|relieved|better|easier)\b[^.?!]{0,20}\bif i (?:was|were|died|disappeared)\b",
                r"\b(?:no|don't see the|what's the|what is the|wonder what the) point (?:in|of) (?:living|life|going on|"
                r"being alive|existing|any of it|it all|anything)\b",
                r"\b(?:no|don't see a|what's the|is there a) (?:reason|point) to (?:live|keep going|go on)\b",
                r"(?:^|[.?!,]\s*|\bmy )life (?:feels|is|seems|isn't|is not) (?:so )?(?:pointless|meaningless|not worth living)\b",
                r"(?:\bnot|n't|\bno longer) worth living\b",
                r"\bdon't care (?:what happens to me|if i (?:live|die|wake up))\b",
                r"\bif (?:a|the) (?:bus|car|truck|lorry|train) (?:hit|hits|ran over|runs over) me\b",
                r"\b(?:won't|will not|not going to|don't think i'll|not gonna) be (?:around|here|alive) (?:much longer|for long|"
                r"for (?:christmas|my birthday|the new year|new year)|to see)\b",
                r"\b(?:won't|will not|not going to) be (?:a (?:problem|burden) (?:for|to) (?:anyone|anybody|you)|"
                r"around|here)\b[^.?!]{0,20}\b(?:much )?(?:longer|for long)\b",
            ),
        ),
        (
            "talks of preparations, goodbyes or a time for it",
            _rules(
                r"\b(?:said|saying|say) (?:my )?goodbyes\b",
                r"\bsaid goodbye to (?:everyone|my (?:friends|family|kids))\b",
                r"\bgiv(?:ing|e|en) away (?:all )?my (?:things|stuff|belongings|possessions)\b",
                r"\bgave (?:away )?my (?:cat|dog|pets?|things|stuff)\b",
                r"\b(?:after|when|once) i'm (?:gone|dead|not here)\b",
                r"\bif (?:something|anything) (?:happens|happened) to me\b[^.?!]{0,30}\b" + _SOON + r"\b",
                r"\bif i (?:die|died|pass away)\b.{0,60}?\b" + _SOON,
                r"\b(?:goodbye|farewell|suicide) (?:note|letter)s?\b",
                r"\b(?:wrote|written|writing) (?:goodbye |farewell |last )?(?:letters|notes) to (?:everyone|everybody|all)\b",
                r"\btonight(?: is|'s) the night\b",
                r"\b(?:put|putting|got|getting|have) (?:all )?my affairs in order\b",
                r"\b(?:picked|chosen|set|choose|pick) a date\b",
                r"\b(?:look after|take care of|have|get|keep)\b[^.?!]{0,30}\bif (?:anything|something) (?:happens|happened)\b",
                r"\bsoon (?:it|this|nothing|none of (?:this|it)) (?:won't|will not|will|wouldn't) matter\b",
                r"\bdo something (?:stupid|drastic|i can't take back)\b",
                r"\b(?:kill|killing|hurt|hurting|harm|harming) (?:himself|herself|themselves|themself)\b",
                r"\b(?:picturing|imagining|imagine|picture|see) myself (?:hanging|dead|jumping|dying|in a coffin|falling)\b",
                r"\b(?:written|wrote|writing|made|making) (?:a|my) will\b[^.?!]{0,40}\b(?:giving|give|leaving|leave)\b",
                r"\bgoodbye (?:everyone|everybody|all|world)\b",
                r"\bhope i (?:get|got|am|'m) (?:in(?:to)? )?(?:a )?(?:car )?(?:crash|accident|hit|killed)\b[^.?!]{0,20}",
                r"\b(?:i've|i have) (?:decided|made up my mind)\s*[.!]",
                r"\bmade (?:my )?peace with it\b",
                r"\b(?:nothing|none of this|it all)\b[^.?!]{0,10}\bwill (?:hurt|matter)\b[^.?!]{0,10}\b(?:soon|anymore)\b",
                r"\bsoon (?:nothing|none of (?:this|it)) will (?:hurt|matter)\b",
                r"\bgoing to do it (?:tonight|tomorrow|after|when|this)\b",
            ),
        ),
    ],
    "self_harm": [
        (
            "hurts themself",
            _rules(
                r"\bself[- ]?harm",
                r"\b(?:cut|cutting|burn|burning|burnt|burned|scratch|scratching|scratched|hit|hitting|punch|punching|"
                r"bang|banging|hurt|hurting|harm|harming|starve|starving|bruise|bruising)\s+(?:myself|my (?:own )?"
                r"(?:arms?|wrists?|thighs?|legs?|skin|stomach|body))\b",
                r"\b(?:hit|bang|banging|hitting) my head (?:against|on) (?:the|a) wall\b",
                r"\b(?:cut|cuts|cutting)\b[^.?!]{0,15}\b(?:too deep|on my (?:arms?|wrists?|thighs?|legs?|body)|again)\b",
                r"\b(?:clean|hide|hiding|cover|covering) (?:the |my )?(?:cuts|scars|burns)\b",
                r"\b(?:stop|started|start|keep|been) cutting\b(?!\s+(?:off|down|back|out|ties|corners|contact|"
                r"them|him|her|people))",
                r"\b(?:razor|blade)\b[^.?!]{0,30}\b(?:hand|wrist|arm|right now)\b",
                r"\b(?:with|holding|hold|got|have|had|grabbed|bought) (?:a |the |my )?(?:razor|razor blade|blade)s?\b",
                r"\b(?:won't|will not) stop bleeding\b|\buntil (?:it|they) bleeds?\b",
                r"\burge to (?:hurt|harm|cut|burn) (?:myself)?",
                r"\b(?:knife|blade|razor|scissors|glass|compass|lighter)\b[^.?!]{0,20}\b(?:to|against|on|across|into) my "
                r"(?:wrists?|arms?|throat|skin|neck|thighs?|legs?)\b",
                r"\b(?:want|wanted|need|needed) (?:it|myself|my body) to (?:hurt|bleed|feel pain)\b",
                r"\buntil (?:my \w+ )?(?:bled|bleed|bleeds|broke)\b",
            ),
        ),
    ],
    "psychosis": [
        (
            "hears commanding voices or holds persecutory or grandiose beliefs",
            _rules(
                r"\b(?:the )?voices\b[^.?!]{0,20}\b(?:tell|telling|told|say|saying|said|want|command)\b",
                r"\bhear(?:ing)? (?:voices|whispering|whispers|people talking)\b",
                r"\bhear(?:ing)? (?:a|the) (?:\w+'s |\w+ )?voice\b[^.?!]{0,20}\b(?:telling|tells|saying|says) me to\b",
                r"\b(?:radio|tv|television|computer|phone)\b[^.?!]{0,25}\b(?:talking|speaking|talks|speaks) (?:directly )?to me\b",
                r"\b(?:god|the devil|jesus|the tv|the television|the radio|the neighbou?rs|aliens|satan)\b"
                r"[^.?!]{0,15}\b(?:told|tells|is telling|are telling|keeps? telling|says|said|sends?|sending|is sending|are sending)\b"
                r"[^.?!]{0,10}\bme\b",
                r"\b(?:read|reading|hear|hearing|steal|stealing|control|controlling|insert|inserting) my thoughts\b",
                r"\bthoughts (?:are|were) being (?:broadcast|stolen|read|controlled)\b",
                r"\bbeing (?:followed|poisoned|tracked|monitored)\b",
                r"\bpoisoning (?:my|the|our) (?:food|drinks?|water|air|house|flat|home)\b",
                r"\b(?:the tv|the radio|the television|people on the (?:tv|radio)|the neighbou?rs)\b[^.?!]{0,20}"
                r"\b(?:talking about|talk about|watching|speaking to|messages for) me\b",
                r"\bwants? me dead\b",
                r"\bbeing watched\b[^.?!]{0,25}\b(?:walls|cameras?|through|tv|phone|microphones?)\b",
                r"\b(?:they're|they are|people are|someone is|everyone is)\b[^.?!]{0,25}\b(?:planning|plotting|trying|out) "
                r"to (?:hurt|kill|get|poison) me\b",
                r"\b(?:putting|inserting|planting) thoughts (?:in|into) my (?:head|mind)\b|\bthoughts that aren't mine\b",
                r"\bprove i can fly\b",
                r"\b(?:stopped|stop|quit|came off) (?:taking )?my (?:antipsychotics|anti-psychotics|lithium)\b",
                r"\bparanoia\b[^.?!]{0,20}\b(?:back|worse|coming)\b",
                r"\bhaven't slept (?:in|for) (?:\w+ )?(?:days|nights)\b",
            ),
        ),
    ],
    "harm_to_others": [
        (
            "wants or fears they will hurt someone",
            _rules(
                _I + r"[^.?!]{0,40}\b(?:want|going|about|afraid i'll|scared i'll|might) to (?:hurt|kill|stab|beat|"
                r"strangle|harm|shoot)\s+(?:him|her|them|someone|somebody|my|the)\b",
                r"\b(?:want|going|about) to (?:hurt|kill|stab|beat|strangle|harm|shoot) (?:him|her|them|someone|"
                r"somebody|my \w+)\b",
                r"\b(?:afraid|scared|terrified) (?:that )?i(?:'ll| will| might| could) (?:hurt|kill|harm)\b",
                r"\b(?:afraid|scared|terrified|worried) (?:that )?(?:i'm|i am) going to\b[^.?!]{0,20}\b(?:hit|hurt|kill|harm|"
                r"shake|strangle|smother)\b",
                r"\bthoughts? (?:about|of) (?:hurting|harming|killing|stabbing|drowning) (?:my|him|her|them|someone|the)\b",
                r"\b(?:deal with|get rid of|get back at) them tonight\b",
                r"\b(?:burn(?:ing)?|set(?:ting)? fire to)\b[^.?!]{0,15}\b(?:his|her|their) (?:house|home|car|flat)\b",
                r"\b(?:urges?|impulses?|thoughts?|imagin(?:e|ing)|picturing|fantasi[sz]ing)\b[^.?!]{0,10}"
                r"\b(?:to |of |about )?(?:push|pushing|hurt|hurting|harm|harming|kill|killing|drown|drowning|stab|"
                r"stabbing|shake|shaking|smother|smothering|hit|hitting|strangle|strangling)\b[^.?!]{0,20}"
                r"\b(?:my|him|her|them|someone|somebody|the baby|people)\b",
            ),
        ),
    ],
    "abuse": [
        (
            "is being hurt, threatened, abused or controlled now",
            _rules(
                _PARTNER + r"\s+(?:still |always |often |sometimes )?(?:hits|beats|chokes|strangles|kicks|punches|"
                r"slaps|hurts|rapes|shoves|pushes) (?:me|us|the kids|the children|my (?:son|daughter|kids|children|"
                r"brother|sister|baby))\b",
                _PARTNER + r"\s+(?:is|are|has been|have been|keeps) (?:hurting|hitting|beating|abusing|touching|"
                r"following|threatening) me\b",
                r"\b(?:choked|strangled|raped|molested|groped) me\b",
                r"\b(?:pushed|threw|kicked|dragged) me (?:down|into|against|across|out)\b",
                r"\b(?:grabbed|cornered|pinned) me\b|\b(?:worse|something bad) (?:would|will) happen if i (?:told|tell)\b",
                r"\bfinish what (?:he|she|they) started\b",
                r"\b(?:meet (?:him|her|them) alone|not (?:to )?tell my (?:parents|mum|mom|dad))\b",
                r"\b(?:beats|chokes|strangles|kicks|punches|slaps|rapes|smacks) (?:me|us)\b",
                r"\bthreaten(?:s|ed|ing)? to (?:hurt|kill|take|harm) (?:me|us|the kids|the children|my \w+)\b",
                r"\b(?:hit|beat|kicked|punched|slapped|hurt|attacked) me\b[^.?!]{0,25}\b" + _NOW + r"\b",
                _PARTNER + r"[^.?!]{0,40}\b(?:touches|touched|touching|feels) me(?: up)?\b"
                r"(?![^.?!]{0,15}\b(?:deeply|heart|so much|a lot)\b)",
                r"\bsexually (?:assaulted|abused|harassed)\b|\b(?:was|been|got) raped\b|\bassaulted me\b",
                r"\b(?:forced|forces|forcing|force|made|makes|make|pressured|pressures)\b[^.?!]{0,10}\b(?:me )?(?:to )?"
                r"(?:have sex|sleep with|do sexual|perform)\b|\bagainst my will\b|\bwithout my consent\b",
                _PARTNER + r"[^.?!]{0,20}\bcomes? into (?:my|the) (?:room|bedroom|bathroom|bed|shower)\b[^.?!]{0,25}"
                r"\b(?:at night|when i'm (?:showering|asleep|changing|in bed|in the shower)|and touches)\b",
                r"\bthreaten(?:ed|s|ing)? (?:me|to kill me|to hurt me)\b",
                r"\bthreaten(?:s|ed|ing)?\b[^.?!]{0,40}\b(?:hurt|kill|beat|harm) (?:me|us)\b",
                r"\bthreaten(?:s|ed|ing)? to (?:post|share|send|leak) (?:my|our) (?:photos|pictures|nudes|videos)\b",
                r"\bsend(?:s|ing)? me (?:sexual|explicit|nude)\b|\b(?:says|said|told me) i (?:can't|cannot|mustn't|"
                r"shouldn't|am not allowed to) tell anyone\b",
                r"\b(?:don't|doesn't|won't|refuse to|refuses to) feed me\b|\block me (?:in|up)\b",
                _PARTNER + r"(?:'ll| will|'d| would|'s going to| is going to|'re going to| are going to| might| could) "
                r"(?:kill|hurt|beat|get) (?:me|us)(?: up)?\b",
                r"\b(?:going to|gonna) (?:kill|hurt) me\b",
                r"\b(?:scared|afraid|not safe) to go home\b|\bnot safe (?:at home|with him|with her)\b",
                r"\bbanging on the door\b|\blocked myself in\b|\blocks me (?:in|up)\b",
                _PARTNER + r"\s+(?:checks|controls|reads|takes|steals|keeps) my (?:phone|money|pension|benefits|"
                r"wages|salary|bank card|cards|passport|messages)\b",
                r"\b(?:won't|doesn't|does not|will not) let me (?:see|leave|go out|talk to|have)\b",
                r"\b(?:husband|wife|partner|boyfriend|girlfriend|carer|he|she) (?:calls|call) me "
                r"(?:worthless|stupid|useless|pathetic|ugly|fat|a \w+)\b[^.?!]{0,20}\b(?:every day|all the time|constantly)\b",
                r"\b(?:shouts|screams|yells) at me and (?:takes|hits|pushes)\b",
            ),
        ),
    ],
    "eating_disorder": [
        (
            "starves, purges or hides weight loss",
            _rules(
                r"\b(?:haven't|have not|hadn't|barely|not) (?:eaten|eat)\b[^.?!]{0,20}\b(?:in|for) (?:a |\w+ )?"
                r"(?:days?|weeks?)\b",
                r"\bmake myself (?:sick|throw up|vomit)\b|\bpurg(?:e|ing|ed)\b|\blaxatives?\b|\bdiet pills\b",
                r"\bbinge\b[^.?!]{0,40}\b(?:exercise|purge|sick|throw up|vomit)\b",
                r"\b(?:fewest|least|minimum) (?:number of )?calories\b",
                r"\b(?:suppress|kill|ignore) my (?:appetite|hunger)\b",
                r"\bwithout eating\b",
                r"\beat\b[^.?!]{0,30}\b(?:get rid of it|throw it (?:back )?up|bring it (?:back )?up)\b",
                r"\bskip(?:ping)? (?:meals|food|eating|lunch|dinner|breakfast)\b[^.?!]{0,30}\b(?:thinner|lose weight|skinny|"
                r"kg|calories)\b|\bi'm (?:at|down to) \d+\s?(?:kg|kilos|pounds|lbs)\b",
                r"\b(?:haven't|have not|hadn't) had anything (?:but|except|other than)\b[^.?!]{0,30}\b(?:for|in) (?:\w+ )?(?:days|weeks)\b",
                r"\bunderweight\b|\bstill (?:feel|look) fat\b",
                r"\bhide my (?:weight loss|not eating|eating)\b",
                r"\b(?:get|stay) (?:under|below) \d+\s?(?:kg|kilos|pounds|lbs|stone)\b",
                r"\bone meal (?:a|every) (?:\w+ )?(?:day|days)\b",
                r"\b(?:throw(?:ing)? up|vomit(?:ing)?|being sick)\b[^.?!]{0,20}\bafter (?:every|each|most|all|i eat|eating)\b",
                r"\b\d{2,4} calories (?:a|per|each) day\b",
                r"\bonly (?:let myself )?eat\b[^.?!]{0,20}\b(?:calories|once a|a day)\b",
            ),
        ),
    ],
}


@dataclass(frozen=True)
class Risk:
    """The verdict on one client turn: `kind` among KINDS; `reason` says which rule or judge decided."""

    detected: bool
    kind: str | None = None
    reason: str = ""

    def as_dict(self) -> dict:
        return {"detected": self.detected, "kind": self.kind, "reason": self.reason}


def rule_risk(text: str) -> Risk:
    """The first rule family that matches `text` (apostrophes and texting spellings made standard)."""
    text = _SPELLING.sub(lambda m: SPELLINGS[m.group(0).lower()], text.replace("’", "'").replace("‘", "'"))
    for kind, families in RULES.items():
        for why, patterns in families:
            if any(pattern.search(text) for pattern in patterns):
                return Risk(True, kind, f"rule: {why}")
    return Risk(False, None, "no rule matched")


def _texts(path: Path) -> list[str]:
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@functools.cache
def _classifier():
    """Fitted once per process (under a second): disclosures against ordinary messages."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    disclosures, ordinary = _texts(DISCLOSURES), _texts(ORDINARY)
    pipeline = make_pipeline(
        TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, lowercase=True),
        LogisticRegression(C=3, class_weight="balanced", max_iter=2000),
    )
    return pipeline.fit(disclosures + ordinary, [1] * len(disclosures) + [0] * len(ordinary))


def local_risk(text: str) -> Risk:
    """The rules, then the classifier for what they miss: the detector that needs no model server."""
    by_rules = rule_risk(text)
    if by_rules.detected:
        return by_rules
    probability = float(_classifier().predict_proba([text])[0, 1])
    if probability >= CLASSIFIER_THRESHOLD:
        return Risk(True, "unspecified", f"classifier: disclosure probability {probability:.2f}")
    return Risk(False, None, f"no rule matched; classifier probability {probability:.2f}")


def risk_kind(text: str) -> str | None:
    """The kind of risk a client turn discloses (one of KINDS), or None."""
    return local_risk(text).kind


HELP = (
    "If you might act on this or you're in danger right now, please call your local emergency number. "
    "In the US you can call or text 988, the Suicide and Crisis Lifeline; in the UK and Ireland, "
    "Samaritans are on 116 123; anywhere else, findahelpline.com lists a free, confidential line near you."
)
ABUSE_HELP = (
    "If you're in danger right now, call your local emergency number. In the US the National Domestic "
    "Violence Hotline is 1-800-799-7233 and RAINN's sexual assault hotline is 1-800-656-4673; in the UK, "
    "the National Domestic Abuse Helpline is 0808 2000 247; findahelpline.com lists others. They can help "
    "you make a plan to stay safe."
)
URGENT = (
    "Please get medical help now: call your local emergency number or go to the nearest emergency "
    "department, even if you feel fine, because some harm does not show until it is serious. "
)
_SUICIDE = [
    "I'm really glad you told me that, and I want to stop right here, because what you just said "
    "matters more than anything we've been talking about. When the pain gets so heavy that not being "
    "here feels like the only way out, that is the pain talking, and you don't have to carry it alone. "
    + HELP
    + " Is there someone you trust who could be with you tonight?",
    "Thank you for trusting me with that. I don't want to move past it. Thoughts of not wanting to live "
    "are a sign of how much you're hurting, not a sign that you're broken or too much. "
    + HELP
    + " Would you be willing to reach out to one of them, or to someone close to you, right now?",
]
SAFE_REPLIES: dict[str, list[str]] = {
    "suicide": _SUICIDE,
    "means": [
        "I'm not going to help with that, and it's because I care what happens to you. When someone asks "
        "about something like this, it usually means the pain has become unbearable. Please put some "
        "distance between yourself and anything you could use to hurt yourself, and talk to someone now. "
        + HELP
    ],
    "overdose": [
        "I'm really glad you told me, and this can't wait. " + URGENT + "If you can, tell the person "
        "nearest to you what was taken and how much, and keep the packets to show. " + HELP
    ],
    "self_harm": [
        "Thank you for telling me; I know that isn't easy to say out loud. Hurting yourself is often a way "
        "of surviving pain that has nowhere else to go, and you deserve support with that pain, not shame. "
        "If a wound is deep, won't stop bleeding or a burn is serious, please get medical help now. "
        + HELP
        + " A doctor or a counsellor can also help you find safer ways through those moments.",
        "I'm glad you said that, and I'm not going to lecture you about it. When hurting yourself is how "
        "you get through, it tells me how much you are carrying. Please don't carry it alone. " + HELP,
    ],
    "harm_to_others": [
        "I'm glad you said that out loud instead of keeping it inside. Feeling that much anger, or having "
        "thoughts like that, can be frightening, and the most important thing right now is that nobody "
        "gets hurt, including you. Please put some distance between you and that person, and talk to "
        "someone today: your doctor, a counsellor, or a crisis line. " + HELP,
    ],
    "abuse": [
        "What you're describing is not okay, and it is not your fault. Your safety comes first, before "
        "anything else we could talk about. " + ABUSE_HELP,
    ],
    "eating_disorder": [
        "Thank you for being honest about this. What you're describing can hurt your body badly, even when "
        "it feels under control, and you deserve care, not more pressure. Please see a doctor soon, and if "
        "you feel faint, your heart races or you have chest pain, get medical help now. In the US the ANAD "
        "helpline is 1-888-375-7767; in the UK, Beat is on 0808 801 0677; findahelpline.com lists others.",
    ],
    "unspecified": [
        "Thank you for telling me that; it sounds like you're carrying something really heavy right now, "
        "and I don't want to move past it. Are you safe at the moment? " + HELP
        + " If someone is hurting you, or you're thinking of hurting yourself, please tell someone you "
        "trust today as well.",
    ],
    "psychosis": [
        "Thank you for telling me what you're going through; it sounds frightening. What you're hearing "
        "and noticing deserves proper care from someone who can be with you, so please contact your doctor "
        "or mental-health team today, or go to an emergency department. If you feel you might hurt "
        "yourself or someone else, call your local emergency number now. " + HELP,
    ],
}


def safe_reply(kind: str, choice: int) -> str:
    """A safe reply for this kind of disclosure; `choice` picks among the variants (stable per unit)."""
    replies = SAFE_REPLIES[kind]
    return replies[choice % len(replies)]
